//! The files a run writes (`--json`, `--csv`): both from the same [`Record`]s, so the CSV has
//! exactly the JSON's fields. Every output path is checked before the run starts, so a typo
//! costs nothing.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

use serde_json::{Map, Value};

use crate::record::Record;

/// Fails if `path` cannot be written. Leaves an existing file as it was, and no file where
/// there was none.
pub fn check_writable(path: &Path) -> io::Result<()> {
    let existed = path.exists();
    OpenOptions::new().append(true).create(true).open(path)?;
    if !existed {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

/// Write all records as a JSON array.
pub fn write_json(path: &Path, records: &[Record]) -> Result<(), String> {
    let write = || -> io::Result<()> {
        let mut f = io::BufWriter::new(std::fs::File::create(path)?);
        serde_json::to_writer_pretty(&mut f, records)?;
        writeln!(f)?;
        f.flush()
    };
    write().map_err(|e| e.to_string())
}

/// Each record as the JSON object it is written as.
fn json_objects(records: &[Record]) -> Vec<Map<String, Value>> {
    records
        .iter()
        .map(|r| match serde_json::to_value(r) {
            Ok(Value::Object(fields)) => fields,
            _ => unreachable!("a Record serialises to a JSON object"),
        })
        .collect()
}

/// One CSV cell: empty for a field the record lacks or holds null, a string as it is, a
/// nested value (the growth samples) as its JSON text.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Write all records as CSV, one row each, with the fields of the JSON: a column for every
/// field any record has, in the order the records first have them.
pub fn write_csv(path: &Path, records: &[Record]) -> Result<(), String> {
    let rows = json_objects(records);
    let mut columns: Vec<&str> = Vec::new();
    for field in rows.iter().flat_map(Map::keys) {
        if !columns.contains(&field.as_str()) {
            columns.push(field);
        }
    }
    let write = || -> csv::Result<()> {
        let mut csv = csv::Writer::from_path(path)?;
        csv.write_record(&columns)?;
        for row in &rows {
            csv.write_record(columns.iter().map(|c| cell(row.get(*c))))?;
        }
        csv.flush()?;
        Ok(())
    };
    write().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fixtures::snapshot_record;

    fn temp_file(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "atomicmap-bench-files-{}-{name}",
            std::process::id()
        ))
    }

    #[test]
    fn csv_has_the_json_fields_and_quotes_what_it_must() {
        let plain = Record {
            map: "LIMIT".into(),
            status: "FAILED: a, \"quoted\"\r\nmessage".into(),
            mops: Some(1.5),
            ..Record::default()
        };
        let records = [plain, snapshot_record()];
        let path = temp_file("quoting.csv");
        write_csv(&path, &records).unwrap();
        let mut reader = csv::Reader::from_path(&path).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        std::fs::remove_file(&path).ok();

        let json = json_objects(&records);
        let mut fields: Vec<&String> = json[0].keys().collect();
        fields.extend(json[1].keys().filter(|k| !json[0].contains_key(*k)));
        assert_eq!(header.iter().collect::<Vec<_>>(), fields);
        assert_eq!(rows.len(), 2);
        let column = |name: &str| header.iter().position(|h| h == name).unwrap();
        assert_eq!(&rows[0][column("status")], records[0].status);
        assert_eq!(&rows[0][column("mops")], "1.5");
        assert_eq!(&rows[0][column("mops_with_snapshots")], "");
        assert_eq!(&rows[1][column("mops_with_snapshots")], "5.0");
    }

    #[test]
    fn an_unwritable_path_is_refused_and_a_writable_one_left_as_it_was() {
        let missing_dir = temp_file("no-such-dir").join("out.json");
        assert!(check_writable(&missing_dir).is_err());
        let fresh = temp_file("fresh.csv");
        check_writable(&fresh).unwrap();
        assert!(!fresh.exists());
        let existing = temp_file("existing.csv");
        std::fs::write(&existing, "kept").unwrap();
        check_writable(&existing).unwrap();
        assert_eq!(std::fs::read_to_string(&existing).unwrap(), "kept");
        std::fs::remove_file(&existing).ok();
    }
}
