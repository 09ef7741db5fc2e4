//! The sensor configuration file (`outpost.toml`).
//!
//! Every table rejects unknown keys; every error names the file, line, column and key. The
//! file may list further rule files (`rule_files`), read relative to the file itself. Without
//! `--config`, the built-in default ([`DEFAULT_CONFIG`], the repository's
//! `config/outpost.toml`) is used: the seed state machine and the demo networks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use outpost_detector::{
    AlertWindowConfig, ConfigError, NetworkConfig, NetworkMap, RuleSet, RulesConfig, SourceText,
};
use serde::Deserialize;

/// The built-in configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/outpost.toml");

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    /// `[sensor]`: identity.
    #[serde(default)]
    pub sensor: SensorSection,
    /// `[pipeline]`: threads and cores.
    #[serde(default)]
    pub pipeline: PipelineSection,
    /// `[alerts]`: alert windows.
    #[serde(default)]
    pub alerts: AlertWindowConfig,
    /// `[[networks]]`: network ids for alerts and windows.
    #[serde(default)]
    pub networks: Vec<NetworkConfig>,
    /// `[rules]`: rules written inline.
    #[serde(default)]
    pub rules: RulesConfig,
    /// Further rule files (same schema as `[rules]`, at their top level), relative to this
    /// file.
    #[serde(default)]
    pub rule_files: Vec<String>,
}

/// `[sensor]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorSection {
    /// Sensor name, written into every alert (`sensor`) and part of alert ids. Default
    /// `outpost`.
    #[serde(default = "default_name")]
    pub name: String,
}

impl Default for SensorSection {
    fn default() -> SensorSection {
        SensorSection { name: default_name() }
    }
}

fn default_name() -> String {
    "outpost".into()
}

/// `[pipeline]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// Worker threads; 0 (the default) means one per available core.
    #[serde(default)]
    pub workers: usize,
    /// Cores to pin workers to, worker `w` on `worker_cores[w % len]`. Default: not pinned.
    #[serde(default)]
    pub worker_cores: Vec<usize>,
    /// Core to pin the receive thread to. Default: not pinned.
    #[serde(default)]
    pub receive_core: Option<usize>,
}

/// A configuration with its rules compiled.
#[derive(Debug)]
pub struct Loaded {
    /// The parsed file.
    pub config: SensorConfig,
    /// Compiled rules (inline and from rule files).
    pub rules: Arc<RuleSet>,
    /// Network lookup.
    pub networks: Arc<NetworkMap>,
    /// Where the configuration came from (a path, or `<built-in>`).
    pub origin: PathBuf,
}

impl Loaded {
    /// Reads and compiles `path`, or the built-in default when `None`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming file, line and key.
    pub fn load(path: Option<&Path>) -> Result<Loaded, ConfigError> {
        let main = match path {
            Some(p) => SourceText::new(
                p,
                std::fs::read_to_string(p).map_err(|e| ConfigError::file(p, format!("cannot read: {e}")))?,
            ),
            None => SourceText::new("<built-in config>", DEFAULT_CONFIG),
        };
        let config: SensorConfig = main.parse()?;
        let base = path.and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        let mut files = Vec::with_capacity(config.rule_files.len());
        for f in &config.rule_files {
            let p = base.join(f);
            let text = std::fs::read_to_string(&p)
                .map_err(|e| ConfigError::file(&p, format!("cannot read rule file: {e}")))?;
            let src = SourceText::new(p, text);
            let rules: RulesConfig = src.parse()?;
            files.push((rules, src));
        }
        let mut parts = vec![(&config.rules, &main, "rules")];
        parts.extend(files.iter().map(|(r, s)| (r, s, "")));
        let rules = RuleSet::compile(parts)?;
        let mut ids = std::collections::HashSet::new();
        for n in &config.networks {
            if !ids.insert(n.id) {
                return Err(ConfigError::file(
                    &main.path,
                    format!("network id {} is used twice in [[networks]]", n.id),
                ));
            }
        }
        let networks = NetworkMap::new(&config.networks);
        Ok(Loaded { origin: main.path.clone(), config, rules: Arc::new(rules), networks: Arc::new(networks) })
    }

    /// Worker count: configured, or one per available core.
    #[must_use]
    pub fn workers(&self, override_workers: Option<usize>) -> usize {
        match override_workers.unwrap_or(self.config.pipeline.workers) {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_config_compiles() {
        let l = Loaded::load(None).expect("default config");
        assert_eq!(l.rules.names().collect::<Vec<_>>(), vec!["seed-state-machine"]);
        assert!(!l.networks.networks().is_empty());
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "[sensor]\nname = \"x\"\n\n[pipeline]\nworkerz = 3\n").unwrap();
        let e = Loaded::load(Some(&p)).expect_err("unknown key");
        assert_eq!((e.line, e.key.as_str()), (5, "workerz"), "{e}");

        std::fs::write(
            &p,
            "[[rules.state_machine]]\nname = \"m\"\nevents = [ { name = \"a\", filter = \"udp port 7001\" } ]\ntransitions = [\n  \"INITIAL --a--> W\",\n  \"W --b--> X\",\n]\n",
        )
        .unwrap();
        let e = Loaded::load(Some(&p)).expect_err("undeclared event");
        assert_eq!(e.line, 6, "{e}");
        assert_eq!(e.key, "rules.state_machine[0].transitions[1]");
        assert!(e.message.contains("event `b` is not declared"), "{e}");

        std::fs::write(
            &p,
            "[[rules.state_machine]]\nname = \"m\"\nevents = [\n  { name = \"a\", filter = \"udp dst prot 7001\" },\n]\ntransitions = [\"INITIAL --a--> W\"]\n",
        )
        .unwrap();
        let e = Loaded::load(Some(&p)).expect_err("bad filter");
        assert_eq!(e.line, 4, "{e}");
        assert_eq!(e.key, "rules.state_machine[0].events[0].filter");
    }

    #[test]
    fn rule_files_are_read_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        std::fs::write(
            dir.path().join("rules/extra.toml"),
            "[[state_machine]]\nname = \"hs\"\nevents = [ { name = \"syn\", filter = \"tcp[tcpflags] & tcp-syn != 0\" } ]\ntransitions = [\"INITIAL --syn--> S\"]\n",
        )
        .unwrap();
        let p = dir.path().join("outpost.toml");
        std::fs::write(&p, "rule_files = [\"rules/extra.toml\"]\n").unwrap();
        let l = Loaded::load(Some(&p)).expect("loads");
        assert_eq!(l.rules.names().collect::<Vec<_>>(), vec!["hs"]);
    }
}
