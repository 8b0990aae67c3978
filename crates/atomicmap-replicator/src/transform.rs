//! Stage 2, the transformer: rewrites or drops a change before it is resolved and applied.
//!
//! A transform is any `Fn(Change) -> Option<Change>`; `None` drops the change. The helpers
//! here cover the seed's cases (field mapping, filtering, TTL injection) and compose with
//! [`chain`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::codec::Change;

/// Stage 2 of the pipeline: a change in, the change to apply (or none) out.
pub type Transform = Box<dyn Fn(Change) -> Option<Change> + Send + Sync>;

/// Passes every change through unchanged.
pub fn identity() -> Transform {
    Box::new(Some)
}

/// Renames keys that start with `from` to start with `to` instead; others pass unchanged.
pub fn rename_prefix(from: impl Into<String>, to: impl Into<String>) -> Transform {
    let (from, to) = (from.into(), to.into());
    Box::new(move |mut change: Change| {
        if let Some(rest) = change.key.strip_prefix(from.as_str()) {
            change.key = format!("{to}{rest}");
        }
        Some(change)
    })
}

/// Keeps only the changes whose key starts with one of `prefixes`.
pub fn keep_prefixes(prefixes: Vec<String>) -> Transform {
    Box::new(move |change: Change| {
        prefixes
            .iter()
            .any(|p| change.key.starts_with(p.as_str()))
            .then_some(change)
    })
}

/// Gives every value that a change sets an expiry `ttl` after it is transformed (the
/// replica's wall clock). Removals pass unchanged.
pub fn with_ttl(ttl: Duration) -> Transform {
    Box::new(move |mut change: Change| {
        if change.value.is_some() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .saturating_add(ttl);
            change.expires_at_ms = Some(u64::try_from(now.as_millis()).unwrap_or(u64::MAX));
        }
        Some(change)
    })
}

/// Applies `transforms` in order; the first that drops the change ends it.
pub fn chain(transforms: Vec<Transform>) -> Transform {
    Box::new(move |change: Change| transforms.iter().try_fold(change, |c, t| t(c)))
}

#[cfg(test)]
mod tests {
    use atomicmap::Version;

    use super::*;

    #[test]
    fn rename_filter_ttl_compose() {
        let t = chain(vec![
            keep_prefixes(vec!["user:".into(), "temp:".into()]),
            rename_prefix("user:", "u/"),
            with_ttl(Duration::from_secs(60)),
        ]);
        let v = Version::new(1, 0);
        let out = t(Change::upsert("user:7".into(), b"x".to_vec(), v)).unwrap();
        assert_eq!(out.key, "u/7");
        assert!(out.expires_at_ms.is_some());
        assert!(t(Change::upsert("order:1".into(), b"x".to_vec(), v)).is_none());
        let removed = t(Change::remove("temp:1".into(), v)).unwrap();
        assert_eq!(removed.expires_at_ms, None);
        assert_eq!(identity()(removed.clone()), Some(removed));
    }
}
