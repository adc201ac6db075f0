//! `beacon serve`'s configuration: flags, then `BEACON_*` environment variables,
//! then the `--config` file (TOML), then defaults; the first that sets a value wins.

use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The keys a configuration file may set (each also a `serve` flag: `data_dir` is
/// `--data-dir`, and the environment variable `BEACON_DATA_DIR`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub trusted_proxies: Option<Vec<IpAddr>>,
    pub geoip_city: Option<PathBuf>,
    pub geoip_asn: Option<PathBuf>,
    pub queue: Option<usize>,
    pub session_visitors: Option<usize>,
    pub read_budget: Option<f64>,
    pub read_slots: Option<usize>,
    pub max_connections: Option<usize>,
    pub header_read_timeout: Option<f64>,
    pub any_origin: Option<bool>,
    pub webhooks_allow_private: Option<bool>,
    pub webhook_retry_base: Option<f64>,
}

impl FileConfig {
    /// Reads `path`; the error names the file, the line and the key.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--config {}: {e}", path.display()))?;
        let config: FileConfig = toml::from_str(&text)
            .map_err(|e| format!("--config {}: {}", path.display(), e.to_string().trim()))?;
        // Relative paths in the file are relative to the file.
        let base = path.parent().unwrap_or(Path::new(""));
        let rebase = |p: Option<PathBuf>| p.map(|p| if p.is_relative() { base.join(p) } else { p });
        Ok(FileConfig {
            data_dir: rebase(config.data_dir),
            geoip_city: rebase(config.geoip_city),
            geoip_asn: rebase(config.geoip_asn),
            ..config
        })
    }
}

#[cfg(test)]
mod tests {
    use super::FileConfig;

    #[test]
    fn a_file_sets_keys_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("beacon.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"data\"\ntrusted_proxies = [\"10.0.0.1\"]\nqueue = 64\n",
        )
        .expect("write");
        let c = FileConfig::load(&path).expect("loads");
        assert_eq!(c.listen.as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(c.data_dir, Some(dir.path().join("data")));
        assert_eq!(c.queue, Some(64));
        assert_eq!(c.trusted_proxies.map(|p| p.len()), Some(1));

        std::fs::write(&path, "listen = \"x\"\nlisten_on = 1\n").expect("write");
        let e = FileConfig::load(&path).expect_err("unknown key");
        assert!(e.contains("listen_on"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }
}
