//! The identity of an output directory: `_landfall.<topic>.json` at the root of the report
//! and rejects directories records the topic ID and the settings signature that the topic's
//! files there were written with. Every consumer checks it at start-up, before it lands
//! anything, so a run with other settings or on a recreated topic is refused even when none
//! of its file names would collide with a landed one (reject files are named by the offset
//! they were cut at, and other settings cut elsewhere). Readers skip it: Hive-style readers
//! ignore names starting with `_`, and `**/*.parquet` does not match it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{publish, SinkError};
use crate::identity::{Identity, Mismatch};
use crate::store::Root;

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    topic: String,
    #[serde(default)]
    topic_id: Option<String>,
    settings: String,
    landfall_version: String,
}

/// The marker's name for `topic`, relative to the directory.
pub fn marker_name(topic: &str) -> String {
    format!("_landfall.{topic}.json")
}

/// Checks `root`'s marker for this run's topic against `id`, writing it first if there is
/// none (with the same no-replace publish as the data files, or a create-only-if-absent PUT in
/// an object store, so two instances starting at once agree on one).
pub fn claim(root: &Root, id: &Identity, sync: bool) -> Result<(), SinkError> {
    let rel = marker_name(&id.topic);
    let path = root.join(Path::new(&rel));
    let marker = Marker {
        topic: id.topic.clone(),
        topic_id: id.topic_id.clone(),
        settings: id.settings.signature(),
        landfall_version: env!("CARGO_PKG_VERSION").into(),
    };
    let mut bytes = serde_json::to_vec_pretty(&marker).unwrap_or_default();
    bytes.push(b'\n');
    let unreadable = |detail: String| SinkError::Unreadable {
        path: path.clone(),
        detail,
    };
    let found = match root {
        Root::Local(_) => {
            if !path.exists() {
                publish::publish_plain(&path, &bytes, sync)?;
            }
            std::fs::read(&path).map_err(|e| unreadable(e.to_string()))?
        }
        Root::Object(store) => {
            store.create(&rel, bytes.into())?;
            let found = store.get(&rel)?;
            found
                .ok_or_else(|| unreadable("it was removed right after it was created".into()))?
                .to_vec()
        }
    };
    check(&path, &found, id)
}

fn check(path: &Path, bytes: &[u8], id: &Identity) -> Result<(), SinkError> {
    let marker: Marker = serde_json::from_slice(bytes).map_err(|e| SinkError::Unreadable {
        path: path.to_path_buf(),
        detail: format!("not a Landfall marker: {e}"),
    })?;
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
