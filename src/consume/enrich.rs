//! Enrich: the campaign table (network and name by campaign id), loaded from CSV at start-up,
//! with a checksum recorded in every output file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub network_id: i64,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct CampaignTable {
    by_id: HashMap<i64, Campaign>,
    /// Hex SHA-256 of the file's bytes.
    pub checksum: String,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error("campaign table {path} (--campaigns): cannot read it: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("campaign table {path} (--campaigns), line {line}: {problem}")]
    Bad {
        path: PathBuf,
        line: u64,
        problem: String,
    },
}

const COLUMNS: [&str; 3] = ["network_id", "campaign_id", "campaign_name"];

impl CampaignTable {
    pub fn load(path: &Path) -> Result<CampaignTable, EnrichError> {
        let bytes = std::fs::read(path).map_err(|source| EnrichError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &bytes)
    }

    pub fn parse(path: &Path, bytes: &[u8]) -> Result<CampaignTable, EnrichError> {
        let bad = |line: u64, problem: String| EnrichError::Bad {
            path: path.to_path_buf(),
            line,
            problem,
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let headers = reader
            .headers()
            .map_err(|e| bad(1, format!("cannot read the header: {e}")))?
            .clone();
        let mut index = [0usize; 3];
        for (i, col) in COLUMNS.iter().enumerate() {
            index[i] = headers.iter().position(|h| h == *col).ok_or_else(|| {
                bad(
                    1,
                    format!(
                        "missing column {col:?}; the header must have {} (found {:?})",
                        COLUMNS.join(","),
                        headers.iter().collect::<Vec<_>>()
                    ),
                )
            })?;
        }
        let mut by_id: HashMap<i64, Campaign> = HashMap::new();
        let mut first_line: HashMap<i64, u64> = HashMap::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                bad(line, format!("malformed CSV: {e}"))
            })?;
            let line = record.position().map_or(0, |p| p.line());
            let field = |i: usize| record.get(index[i]).unwrap_or("");
            let number = |i: usize| -> Result<i64, EnrichError> {
                field(i).parse::<i64>().map_err(|_| {
                    bad(
                        line,
                        format!("{} {:?} is not a whole number", COLUMNS[i], field(i)),
                    )
                })
            };
            let network_id = number(0)?;
            let campaign_id = number(1)?;
            if let Some(prev) = first_line.insert(campaign_id, line) {
                return Err(bad(
                    line,
                    format!("duplicate campaign_id {campaign_id} (first on line {prev})"),
                ));
            }
            by_id.insert(
                campaign_id,
                Campaign {
                    network_id,
                    name: field(2).to_string(),
                },
            );
        }
        if by_id.is_empty() {
            return Err(bad(
                1,
                "has a header but no campaigns: every event would have an unknown campaign; \
                 give the table with its rows"
                    .into(),
            ));
        }
        Ok(CampaignTable {
            by_id,
            checksum: format!("{:x}", Sha256::digest(bytes)),
            path: path.to_path_buf(),
        })
    }

    pub fn get(&self, campaign_id: i64) -> Option<&Campaign> {
        self.by_id.get(&campaign_id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Every campaign, by id.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &Campaign)> {
        self.by_id.iter().map(|(id, c)| (*id, c))
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CampaignTable, EnrichError> {
        CampaignTable::parse(Path::new("campaigns.csv"), text.as_bytes())
    }

    #[test]
    fn loads_the_shipped_table() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/campaigns_dict/campaigns.csv");
        let t = CampaignTable::load(&path).unwrap();
        assert_eq!(t.len(), 14);
        assert_eq!(
            t.get(40),
            Some(&Campaign {
                network_id: 2,
                name: "Campaign 40".into()
            })
        );
        assert_eq!(t.get(140).unwrap().network_id, 4);
        assert!(t.get(150).is_none());
        assert_eq!(t.checksum.len(), 64);
    }

    #[test]
    fn bad_tables_name_the_line_and_the_problem() {
        let e = parse("network_id,campaign_name\n1,x\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 1") && e.contains("missing column \"campaign_id\""),
            "{e}"
        );
        let e = parse("network_id,campaign_id,campaign_name\n1,10,a\n2,10,b\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("duplicate campaign_id 10 (first on line 2)"),
            "{e}"
        );
        let e = parse("network_id,campaign_id,campaign_name\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no campaigns") && e.contains("--campaigns"),
            "{e}"
        );
        let e = parse("network_id,campaign_id,campaign_name\n1,ten,a\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("campaign_id \"ten\" is not a whole number"),
            "{e}"
        );
    }
}
