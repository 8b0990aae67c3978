//! An audit export of a map that is being written: `snapshot()` takes the map at one instant,
//! and the snapshot is serialized to JSON while the writers go on.
//!
//! Two writers append ledger entries, each under its own keys in sequence order
//! (`writer-1/000000`, `writer-1/000001`, ...), and never remove one. At any instant, each
//! writer's entries are therefore a prefix of its sequence. The example exports several
//! snapshots mid-write and checks that each export, read back, is such a state: no gap in any
//! writer's sequence (weakly consistent iteration could show entry 8 without entry 7), every
//! amount as written, and later exports never smaller. Exits non-zero if not.
//!
//! `cargo run -p atomicmap --features serde --example audit_export`

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use atomicmap::AtomicMap;

const WRITERS: u64 = 2;
const MAX_ENTRIES_PER_WRITER: u64 = 200_000;
const EXPORTS: usize = 5;

fn entry_key(writer: u64, sequence: u64) -> String {
    format!("writer-{writer}/{sequence:06}")
}

fn amount(writer: u64, sequence: u64) -> u64 {
    writer * 1_000_000 + sequence
}

/// Checks that an export read back is a state the ledger was in; returns its entry count.
fn audit(export: &BTreeMap<String, u64>) -> usize {
    for writer in 1..=WRITERS {
        let prefix = format!("writer-{writer}/");
        let entries: Vec<(&String, &u64)> = export
            .iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .collect();
        // Keys sort in sequence order (fixed width), so a prefix of the sequence is exactly
        // "the n-th entry has sequence n".
        for (expected_sequence, (key, value)) in (0..).zip(&entries) {
            assert_eq!(
                **key,
                entry_key(writer, expected_sequence),
                "the export skips an entry of writer {writer}: not a state the ledger was in"
            );
            assert_eq!(
                **value,
                amount(writer, expected_sequence),
                "amount of {key}"
            );
        }
    }
    export.len()
}

fn main() {
    let ledger: AtomicMap<String, u64> = AtomicMap::new();
    let writing = AtomicBool::new(true);

    let exports = thread::scope(|scope| {
        for writer in 1..=WRITERS {
            let (ledger, writing) = (&ledger, &writing);
            scope.spawn(move || {
                let mut sequence = 0;
                while writing.load(Ordering::Relaxed) && sequence < MAX_ENTRIES_PER_WRITER {
                    ledger.insert(entry_key(writer, sequence), amount(writer, sequence));
                    sequence += 1;
                }
            });
        }

        let mut exports = Vec::with_capacity(EXPORTS);
        for _ in 0..EXPORTS {
            thread::sleep(Duration::from_millis(20));
            let snapshot = ledger.snapshot();
            let json = serde_json::to_string(&snapshot).expect("a snapshot serializes");
            exports.push((snapshot.version(), snapshot.len(), json));
        }
        writing.store(false, Ordering::Relaxed);
        exports
    });

    let mut previous_len = 0;
    let mut previous_version = 0;
    for (version, len, json) in &exports {
        let export: BTreeMap<String, u64> =
            serde_json::from_str(json).expect("the export is a JSON object of the entries");
        assert_eq!(
            export.len(),
            *len,
            "the JSON holds every entry of its snapshot"
        );
        let audited = audit(&export);
        assert!(audited >= previous_len, "a later export lost entries");
        assert!(
            *version >= previous_version,
            "snapshot versions never go back"
        );
        println!(
            "export at version {version}: {audited} entries, {} bytes of JSON, consistent",
            json.len()
        );
        previous_len = audited;
        previous_version = *version;
    }

    // An export is also a way to restore: it deserializes straight into a map.
    let (_, len, last) = exports.last().expect("at least one export");
    let restored: AtomicMap<String, u64> =
        serde_json::from_str(last).expect("an export deserializes into a map");
    assert_eq!(restored.len(), *len);
    assert_eq!(restored.get(&entry_key(1, 0)), Some(amount(1, 0)));
    println!("the last export restores into a map of {len} entries");
}
