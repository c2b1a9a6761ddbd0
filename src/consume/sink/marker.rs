//! The identity of an output directory: `_landfall.<topic>.json` at the root of the report
//! and rejects directories records the topic ID and the settings signature that the topic's
//! files there were written with. Every consumer checks it at start-up, before it lands
//! anything, so a run with other settings or on a recreated topic is refused even when none
//! of its file names would collide with a landed one (reject files are named by the offset
//! they were cut at, and other settings cut elsewhere). Readers skip it: Hive-style readers
//! ignore names starting with `_`, and `**/*.parquet` does not match it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{publish, SinkError};
use crate::identity::{Identity, Mismatch};

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    topic: String,
    #[serde(default)]
    topic_id: Option<String>,
    settings: String,
    landfall_version: String,
}

/// The marker's path for `topic` under `root`.
pub fn marker_path(root: &Path, topic: &str) -> PathBuf {
    root.join(format!("_landfall.{topic}.json"))
}

/// Checks `root`'s marker for this run's topic against `id`, writing it first if there is
/// none (with the same no-replace publish as the data files, so two instances starting at
/// once agree on one).
pub fn claim(root: &Path, id: &Identity, sync: bool) -> Result<(), SinkError> {
    let path = marker_path(root, &id.topic);
    if !path.exists() {
        let marker = Marker {
            topic: id.topic.clone(),
            topic_id: id.topic_id.clone(),
            settings: id.settings.signature(),
            landfall_version: env!("CARGO_PKG_VERSION").into(),
        };
        let mut bytes = serde_json::to_vec_pretty(&marker).unwrap_or_default();
        bytes.push(b'\n');
        publish::publish_plain(&path, &bytes, sync)?;
    }
    check(&path, id)
}

fn check(path: &Path, id: &Identity) -> Result<(), SinkError> {
    let unreadable = |detail: String| SinkError::Unreadable {
        path: path.to_path_buf(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    let marker: Marker = serde_json::from_slice(&bytes)
        .map_err(|e| unreadable(format!("not a Landfall marker: {e}")))?;
    let differs = |what, found: &str, expected: String| SinkError::MarkerMismatch {
        path: path.to_path_buf(),
        mismatch: Mismatch {
            what,
            found: found.to_string(),
            expected,
        },
    };
    if marker.topic != id.topic {
        return Err(differs("topic", &marker.topic, id.topic.clone()));
    }
    if let (Some(found), Some(ours)) = (&marker.topic_id, &id.topic_id) {
        if found != ours {
            return Err(differs("topic ID", found, ours.clone()));
        }
    }
    if !id.settings.agrees_with(&marker.settings) {
        return Err(differs(
            "window settings",
            &marker.settings,
            id.settings.signature(),
        ));
    }
    Ok(())
}
