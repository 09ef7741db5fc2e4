//! The sensor configuration file (`outpost.toml`).
//!
//! Every table rejects unknown keys; every error names the file, line, column and key. The
//! file may list further rule files (`rule_files`), read relative to the file itself. Without
//! `--config`, the built-in default ([`DEFAULT_CONFIG`], the repository's
//! `config/outpost.toml`) is used: the seed state machine and the demo networks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use outpost_decode::Duration;
use outpost_detector::{
    AlertPolicyConfig, AlertWindowConfig, ConfigDuration, ConfigError, NetworkConfig, NetworkMap, RuleSet,
    RulesConfig, SourceText,
};
use outpost_flowmeter::{FlowConfig, MAX_ACTIVE_TIMEOUT, TableConfig};
use serde::Deserialize;
use toml::Spanned;

/// Most worker threads (the worker number is the top byte of flow ids).
pub const MAX_WORKERS: usize = 256;

/// The built-in configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/outpost.toml");

/// The built-in configuration's rule files (`rules.d/*.toml` of the repository's `config/`),
/// by the path the configuration names them with.
pub const BUILTIN_RULE_FILES: &[(&str, &str)] = &[
    ("rules.d/default.toml", include_str!("../../config/rules.d/default.toml")),
    ("rules.d/seed.toml", include_str!("../../config/rules.d/seed.toml")),
];

/// The files a `rule_files` entry names: itself, or — when its file name holds `*` — every
/// file of its directory matching the pattern (`*` matches any run of characters), sorted.
fn expand(
    pattern: &str,
    list_dir: impl Fn(&Path) -> std::io::Result<Vec<String>>,
) -> std::io::Result<Vec<String>> {
    let (dir, name) = match pattern.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", pattern),
    };
    if !name.contains('*') {
        return Ok(vec![pattern.to_string()]);
    }
    let mut out: Vec<String> = list_dir(Path::new(dir))?
        .into_iter()
        .filter(|f| wildcard(name, f))
        .map(|f| if dir.is_empty() { f } else { format!("{dir}/{f}") })
        .collect();
    out.sort();
    Ok(out)
}

/// `*` matches any run of characters; everything else matches itself.
fn wildcard(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len().saturating_sub(head.len()))
                    .any(|i| name.get(head.len() + i..).is_some_and(|rest| wildcard(tail, rest)))
        }
    }
}

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
    /// `[alerts]`: alert windows and lateness.
    #[serde(default)]
    pub alerts: AlertWindowConfig,
    /// `[alert_policy]`: dedup, suppression, rate limits.
    #[serde(default)]
    pub alert_policy: AlertPolicyConfig,
    /// `[flows]`: the flow meter.
    #[serde(default)]
    pub flows: FlowsSection,
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

/// `[flows]`: flow meter sizes and timeouts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsSection {
    /// Meter flows at all. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Most flows tracked per worker; when full, the flow idle longest is exported with
    /// `flowEndReason: evicted`. Default 1048576 (about 122 bytes each, allocated up front
    /// as virtual memory and touched as flows arrive).
    #[serde(default = "default_flow_capacity")]
    pub capacity: usize,
    /// A flow with no packet for this long ends. Default `30s`.
    #[serde(default = "default_idle")]
    pub idle_timeout: Spanned<ConfigDuration>,
    /// A flow active this long emits an interim record (delta counters, same flow id) and
    /// goes on. Default `120s`, at most `1h`.
    #[serde(default = "default_active")]
    pub active_timeout: Spanned<ConfigDuration>,
    /// After both TCP FINs or a RST, how long the flow waits for the last packets (the final
    /// ACK) before its record is exported. Default `2s`.
    #[serde(default = "default_linger")]
    pub close_linger: Spanned<ConfigDuration>,
    /// How long a first fragment's ports are kept for its later fragments. Default `30s`.
    #[serde(default = "default_fragment_timeout")]
    pub fragment_timeout: Spanned<ConfigDuration>,
    /// Most fragmented datagrams tracked at once per worker. Default 65536.
    #[serde(default = "default_fragment_capacity")]
    pub fragment_capacity: usize,
}

impl Default for FlowsSection {
    fn default() -> FlowsSection {
        FlowsSection {
            enabled: true,
            capacity: default_flow_capacity(),
            idle_timeout: default_idle(),
            active_timeout: default_active(),
            close_linger: default_linger(),
            fragment_timeout: default_fragment_timeout(),
            fragment_capacity: default_fragment_capacity(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_flow_capacity() -> usize {
    FlowConfig::default().table.capacity
}
fn unspanned(d: Duration) -> Spanned<ConfigDuration> {
    Spanned::new(0..0, ConfigDuration(d))
}
fn default_idle() -> Spanned<ConfigDuration> {
    unspanned(FlowConfig::default().table.idle_timeout)
}
fn default_active() -> Spanned<ConfigDuration> {
    unspanned(FlowConfig::default().table.active_timeout)
}
fn default_linger() -> Spanned<ConfigDuration> {
    unspanned(FlowConfig::default().table.close_linger)
}
fn default_fragment_timeout() -> Spanned<ConfigDuration> {
    unspanned(FlowConfig::default().fragment_timeout)
}
fn default_fragment_capacity() -> usize {
    FlowConfig::default().fragment_capacity
}

impl FlowsSection {
    /// The flow meter configuration, checked against its limits.
    ///
    /// # Errors
    /// A [`ConfigError`] at the offending key.
    pub fn to_config(&self, src: &SourceText) -> Result<FlowConfig, ConfigError> {
        let positive = |d: &Spanned<ConfigDuration>, key: &str| {
            if d.get_ref().0 == Duration::ZERO {
                Err(src.error(d.span(), format!("flows.{key}"), "must be longer than zero"))
            } else {
                Ok(d.get_ref().0)
            }
        };
        let idle_timeout = positive(&self.idle_timeout, "idle_timeout")?;
        let active_timeout = positive(&self.active_timeout, "active_timeout")?;
        let close_linger = positive(&self.close_linger, "close_linger")?;
        let fragment_timeout = positive(&self.fragment_timeout, "fragment_timeout")?;
        if close_linger > idle_timeout {
            return Err(src.error(
                self.close_linger.span(),
                "flows.close_linger",
                "must not be longer than flows.idle_timeout",
            ));
        }
        if active_timeout > MAX_ACTIVE_TIMEOUT {
            return Err(src.error(self.active_timeout.span(), "flows.active_timeout", "must be at most 1h"));
        }
        if self.capacity == 0 || self.capacity > outpost_flowmeter::table::MAX_CAPACITY {
            return Err(src.error(0..0, "flows.capacity", "must be between 1 and 4294967294"));
        }
        Ok(FlowConfig {
            table: TableConfig { capacity: self.capacity, idle_timeout, active_timeout, close_linger },
            fragment_timeout,
            fragment_capacity: self.fragment_capacity.max(1),
        })
    }
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
    /// The flow meter configuration, or `None` when `flows.enabled` is false.
    pub flows: Option<FlowConfig>,
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
        for pattern in &config.rule_files {
            let names = match path {
                Some(_) => expand(pattern, |d| {
                    let dir = base.join(d);
                    std::fs::read_dir(&dir)?
                        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                        .collect()
                }),
                None => expand(pattern, |d| {
                    Ok(BUILTIN_RULE_FILES
                        .iter()
                        .filter_map(|(p, _)| {
                            p.rsplit_once('/')
                                .filter(|(dir, _)| Path::new(dir) == d)
                                .map(|(_, n)| n.to_string())
                        })
                        .collect())
                }),
            }
            .map_err(|e| ConfigError::file(&base.join(pattern), format!("cannot list rule files: {e}")))?;
            if names.is_empty() {
                return Err(ConfigError::file(
                    &main.path,
                    format!("rule_files: `{pattern}` matches no file"),
                ));
            }
            for f in names {
                let (p, text) = match path {
                    Some(_) => {
                        let p = base.join(&f);
                        let text = std::fs::read_to_string(&p)
                            .map_err(|e| ConfigError::file(&p, format!("cannot read rule file: {e}")))?;
                        (p, text)
                    }
                    None => {
                        let text =
                            BUILTIN_RULE_FILES.iter().find(|(n, _)| *n == f).map(|(_, t)| (*t).to_string());
                        let text = text
                            .ok_or_else(|| ConfigError::file(Path::new(&f), "no such built-in rule file"))?;
                        (PathBuf::from(format!("<built-in {f}>")), text)
                    }
                };
                let src = SourceText::new(p, text);
                let rules: RulesConfig = src.parse()?;
                files.push((rules, src));
            }
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
        let flows = if config.flows.enabled { Some(config.flows.to_config(&main)?) } else { None };
        if config.pipeline.workers > MAX_WORKERS {
            return Err(ConfigError::file(&main.path, format!("pipeline.workers: at most {MAX_WORKERS}")));
        }
        Ok(Loaded {
            origin: main.path.clone(),
            config,
            rules: Arc::new(rules),
            networks: Arc::new(networks),
            flows,
        })
    }

    /// Worker count: configured, or one per available core; at most [`MAX_WORKERS`].
    #[must_use]
    pub fn workers(&self, override_workers: Option<usize>) -> usize {
        match override_workers.unwrap_or(self.config.pipeline.workers) {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
        .min(MAX_WORKERS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_runs_of_characters() {
        assert!(wildcard("*.toml", "default.toml"));
        assert!(wildcard("a*b*c", "aXXbYc"));
        assert!(!wildcard("*.toml", "default.toml~"));
        assert!(wildcard("x", "x"));
        let files =
            expand("rules.d/*.toml", |_| Ok(vec!["b.toml".into(), "a.toml".into(), "c.txt".into()])).unwrap();
        assert_eq!(files, vec!["rules.d/a.toml", "rules.d/b.toml"]);
    }

    #[test]
    fn the_built_in_config_compiles_and_matches_the_repository_files() {
        let l = Loaded::load(None).expect("default config");
        let names: Vec<&str> = l.rules.names().collect();
        assert!(names.contains(&"seed-state-machine") && names.contains(&"scan-vertical-tcp"), "{names:?}");
        let from_files =
            Loaded::load(Some(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/outpost.toml"))))
                .expect("repository config");
        assert_eq!(
            from_files.rules.names().collect::<Vec<_>>(),
            names,
            "BUILTIN_RULE_FILES must list every rules.d file"
        );
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
    fn flow_limits_are_checked_at_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.toml");
        std::fs::write(&p, "[flows]\ncapacity = 1000\n\nactive_timeout = \"2h\"\n").unwrap();
        let e = Loaded::load(Some(&p)).expect_err("too long");
        assert_eq!((e.line, e.key.as_str()), (4, "flows.active_timeout"), "{e}");
        std::fs::write(&p, "[flows]\nidle_timeout = \"5s\"\nactive_timeout = \"1m\"\n").unwrap();
        let f = Loaded::load(Some(&p)).expect("valid").flows.expect("enabled");
        assert_eq!(f.table.idle_timeout, Duration::from_secs(5));
        assert_eq!(f.table.active_timeout, Duration::from_secs(60));
        std::fs::write(&p, "[flows]\nenabled = false\n").unwrap();
        assert!(Loaded::load(Some(&p)).expect("valid").flows.is_none());
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
