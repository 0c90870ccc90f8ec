//! Scenario files: the TOML a `wasmesh-sim run` reads, checked before anything starts.
//!
//! A scenario names the mesh (nodes, latency model, late joiners), what is published and where
//! it is replicated, the load, the faults on a timeline, and what must hold at the end
//! (`[expect]`). Module paths are relative to the scenario file's folder.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::latency::LatencyModel;

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Seeds the latency model, the publisher key, inputs and entry choices.
    #[serde(default)]
    pub seed: u64,
    /// Real nodes to run.
    pub nodes: usize,
    /// Delays between them.
    #[serde(default)]
    pub latency: LatencySpec,
    /// Nodes that are not started at the beginning (a `start` fault starts them).
    #[serde(default)]
    pub late: Vec<usize>,
    /// Modules to publish.
    #[serde(default)]
    pub publish: Vec<PublishSpec>,
    /// Request load, run one after the other.
    #[serde(default)]
    pub load: Vec<LoadSpec>,
    /// Faults and their times.
    #[serde(default)]
    pub fault: Vec<FaultSpec>,
    /// What must hold at the end.
    #[serde(default)]
    pub expect: Expectations,
    /// Whether nodes hedge slow forwards (default: true, as a node does).
    #[serde(default = "default_true")]
    pub hedging: bool,
    /// How often nodes send their status when nothing changes, in milliseconds (default: 500,
    /// the local pace; `wasmesh node run` uses 2000).
    pub status_interval_ms: Option<u64>,
    /// How long the mesh runs once its modules are ready before the load starts, in
    /// milliseconds (default: 0), so that the traffic table shows a mesh past its start-up
    /// (first syncs, Kademlia filling its tables, announcements).
    #[serde(default)]
    pub settle_ms: u64,
    /// Where relative module paths start (the scenario file's folder).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// The `[latency]` table: a matrix, `model = "random"` or `model = "geo"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySpec {
    /// `matrix` (the default when `matrix` is given), `random` or `geo`.
    pub model: Option<String>,
    /// One-way milliseconds, `matrix[i][j]` from i to j.
    pub matrix: Option<Vec<Vec<f64>>>,
    /// For `random`: the range of one-way delays.
    pub min_ms: Option<f64>,
    /// For `random`.
    pub max_ms: Option<f64>,
    /// For `geo`: a city per node.
    pub cities: Option<Vec<String>>,
}

/// One `[[publish]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSpec {
    /// `.wat` or `.wasm` file.
    pub module: PathBuf,
    /// Module name.
    pub name: String,
    /// Version (default 1).
    #[serde(default = "one")]
    pub version: u64,
    /// Nodes that replicate it.
    pub holders: Vec<usize>,
    /// Node it is published through (default: the first holder).
    pub via: Option<usize>,
    /// Published during the load at this time instead of before it.
    pub at_ms: Option<u64>,
}

/// Which node a request enters at.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Entry {
    /// `"random"`: any node that is up.
    Random(String),
    /// One node.
    Node(usize),
    /// Any of these (those that are up).
    Nodes(Vec<usize>),
}

/// One `[[load]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// The module name (or `name@version`).
    pub module: String,
    /// Where requests enter.
    #[serde(default = "random_entry")]
    pub entry: Entry,
    /// How many requests.
    pub requests: u32,
    /// Requests in flight at once.
    #[serde(default = "four")]
    pub concurrency: u32,
    /// Size of each (random) input.
    #[serde(default = "sixty_four")]
    pub input_bytes: usize,
    /// The module echoes its input: a different answer counts as a failure.
    #[serde(default)]
    pub echo: bool,
    /// Requests per second in all, paced: request `k` leaves no earlier than `k / rate` seconds
    /// after the load starts (default: as fast as `concurrency` allows).
    pub rate: Option<f64>,
}

/// One `[[fault]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// When, in milliseconds after the load starts.
    pub at_ms: u64,
    /// Nodes that crash.
    #[serde(default)]
    pub kill: Vec<usize>,
    /// Nodes started again on their data folder.
    #[serde(default)]
    pub restart: Vec<usize>,
    /// Late nodes started for the first time.
    #[serde(default)]
    pub start: Vec<usize>,
    /// Groups the mesh is cut into.
    #[serde(default)]
    pub partition: Vec<Vec<usize>>,
    /// Ends every partition.
    #[serde(default)]
    pub heal: bool,
    /// Nodes that turn slow: they freeze for `stall_ms` out of every `stall_every_ms`, and
    /// packets to or from them wait for the stall to end (`stall_ms = 0` makes them normal
    /// again).
    #[serde(default)]
    pub slow: Vec<usize>,
    /// How long each stall of a slow node lasts, in milliseconds.
    #[serde(default)]
    pub stall_ms: u64,
    /// How often a stall begins, in milliseconds (default: 1000).
    pub stall_every_ms: Option<u64>,
}

fn default_true() -> bool {
    true
}

/// The `[expect]` table: what must hold for the run to pass.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// Least share of requests that succeed.
    pub success_rate: Option<f64>,
    /// Least share of successful requests that ran where the oracle says.
    pub oracle_fraction: Option<f64>,
    /// Every running node ends with every module (and holders with it ready).
    #[serde(default)]
    pub every_module_everywhere: bool,
    /// Most milliseconds from the last heal until every holder is ready.
    pub ready_after_heal_ms: Option<u64>,
}

fn one() -> u64 {
    1
}
fn four() -> u32 {
    4
}
fn sixty_four() -> usize {
    64
}
fn random_entry() -> Entry {
    Entry::Random("random".into())
}

/// Why a scenario cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Unreadable file (the message carries the cause; it is not also a `source`).
    #[error("cannot read {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// Not valid TOML for a scenario.
    #[error("{path} is not a valid scenario: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's words.
        message: String,
    },
    /// Valid TOML that does not make sense.
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ScenarioError::Read {
            path: path.to_owned(),
            cause,
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        Self::parse(&text, &base).map_err(|error| match error {
            ScenarioError::Parse { message, .. } => ScenarioError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and checks scenario text; module paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, ScenarioError> {
        let mut scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        scenario.base_dir = base_dir.to_owned();
        scenario.validate()?;
        Ok(scenario)
    }

    /// The latency model the `[latency]` table describes.
    pub fn latency_model(&self) -> Result<LatencyModel, ScenarioError> {
        let spec = &self.latency;
        let model = spec.model.as_deref().unwrap_or(if spec.matrix.is_some() {
            "matrix"
        } else if spec.cities.is_some() {
            "geo"
        } else {
            "random"
        });
        let invalid = |m: &str| Err(ScenarioError::Invalid(m.to_owned()));
        match model {
            "matrix" => match &spec.matrix {
                Some(matrix) => Ok(LatencyModel::Matrix {
                    matrix: matrix.clone(),
                }),
                None => invalid("latency model \"matrix\" needs `matrix`"),
            },
            "random" => {
                let LatencyModel::Random { min_ms, max_ms } = LatencyModel::default() else {
                    return invalid("no default latency");
                };
                Ok(LatencyModel::Random {
                    min_ms: spec.min_ms.unwrap_or(min_ms),
                    max_ms: spec.max_ms.unwrap_or(max_ms),
                })
            }
            "geo" => match &spec.cities {
                Some(cities) => Ok(LatencyModel::Geo {
                    cities: cities.clone(),
                }),
                None => invalid("latency model \"geo\" needs `cities`"),
            },
            other => invalid(&format!(
                "unknown latency model {other:?} (matrix, random or geo)"
            )),
        }
    }

    /// The path of a publish entry's module.
    pub fn module_path(&self, publish: &PublishSpec) -> PathBuf {
        self.base_dir.join(&publish.module)
    }

    /// The holders of the module a load names.
    pub fn holders_of(&self, module: &str) -> Vec<usize> {
        let name = module.split('@').next().unwrap_or(module);
        self.publish
            .iter()
            .filter(|p| p.name == name)
            .flat_map(|p| p.holders.iter().copied())
            .collect()
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let nodes = self.nodes;
        let invalid = |m: String| Err(ScenarioError::Invalid(m));
        if nodes == 0 || nodes > crate::relay::MAX_NODES {
            return invalid(format!(
                "nodes must be 1..={}, not {nodes}",
                crate::relay::MAX_NODES
            ));
        }
        let check = |what: &str, list: &[usize]| -> Result<(), ScenarioError> {
            match list.iter().find(|&&i| i >= nodes) {
                Some(i) => Err(ScenarioError::Invalid(format!(
                    "{what} names node {i}, but nodes are 0..{nodes}"
                ))),
                None => Ok(()),
            }
        };
        check("late", &self.late)?;
        if self.late.len() == nodes {
            return invalid("at least one node must start at the beginning".into());
        }
        self.latency_model()?;
        for publish in &self.publish {
            wasmesh_protocol::manifest::validate_name(&publish.name)
                .map_err(|e| ScenarioError::Invalid(format!("publish {:?}: {e}", publish.name)))?;
            check(
                &format!("publish {:?} holders", publish.name),
                &publish.holders,
            )?;
            if publish.holders.is_empty() {
                return invalid(format!("publish {:?} has no holders", publish.name));
            }
            if let Some(via) = publish.via {
                check("publish via", &[via])?;
            }
        }
        for load in &self.load {
            if self.holders_of(&load.module).is_empty() {
                return invalid(format!(
                    "load names {:?}, which is not published",
                    load.module
                ));
            }
            match &load.entry {
                Entry::Random(word) if word != "random" => {
                    return invalid(format!(
                        "entry must be \"random\", a node or a list, not {word:?}"
                    ));
                }
                Entry::Node(i) => check("load entry", &[*i])?,
                Entry::Nodes(list) => check("load entry", list)?,
                Entry::Random(_) => {}
            }
            if load.concurrency == 0 {
                return invalid("load concurrency must be at least 1".into());
            }
        }
        self.validate_faults(&check)?;
        Ok(())
    }

    /// The faults name nodes that exist, stalls that end before the next, and starts of late
    /// nodes only.
    fn validate_faults(&self, check: &NodeListCheck<'_>) -> Result<(), ScenarioError> {
        let invalid = |m: String| Err(ScenarioError::Invalid(m));
        for fault in &self.fault {
            check("slow", &fault.slow)?;
            if fault
                .stall_every_ms
                .is_some_and(|every| every <= fault.stall_ms)
            {
                return invalid(format!(
                    "fault at {} ms: stall_every_ms must be longer than stall_ms",
                    fault.at_ms
                ));
            }
            check("kill", &fault.kill)?;
            check("restart", &fault.restart)?;
            check("start", &fault.start)?;
            for group in &fault.partition {
                check("partition", group)?;
            }
            if let Some(i) = fault.start.iter().find(|i| !self.late.contains(i)) {
                return invalid(format!(
                    "fault starts node {i}, which is not listed in `late`"
                ));
            }
        }
        Ok(())
    }
}

/// Checks that a list of node indices (named by its field) names nodes that exist.
type NodeListCheck<'a> = dyn Fn(&str, &[usize]) -> Result<(), ScenarioError> + 'a;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_example_parses() {
        let text = r#"
seed = 7
nodes = 5
[latency]
matrix = [[0, 20, 35, 50, 10], [20, 0, 1, 1, 1], [35, 1, 0, 1, 1], [50, 1, 1, 0, 1], [10, 1, 1, 1, 0]]
[[publish]]
module = "echo.wat"
name = "echo"
holders = [0, 3]
[[load]]
module = "echo"
entry = "random"
requests = 200
concurrency = 4
input_bytes = 64
[[fault]]
at_ms = 2000
kill = [3]
"#;
        let scenario = Scenario::parse(text, Path::new("/x")).unwrap();
        assert_eq!(scenario.nodes, 5);
        assert!(matches!(
            scenario.latency_model().unwrap(),
            LatencyModel::Matrix { .. }
        ));
        assert_eq!(
            scenario.module_path(&scenario.publish[0]),
            Path::new("/x/echo.wat")
        );
        assert_eq!(scenario.fault[0].kill, vec![3]);
    }

    #[test]
    fn nodes_out_of_range_are_named() {
        let text = "nodes = 2\n[[publish]]\nmodule = \"a.wat\"\nname = \"a\"\nholders = [5]\n";
        let error = Scenario::parse(text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(error.contains("node 5"), "{error}");
    }

    #[test]
    fn stalls_longer_than_their_period_are_refused() {
        let text =
            "nodes = 2\n[[fault]]\nat_ms = 0\nslow = [1]\nstall_ms = 50\nstall_every_ms = 40\n";
        let error = Scenario::parse(text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(error.contains("stall_every_ms"), "{error}");
        let ok = "nodes = 2\n[[fault]]\nat_ms = 0\nslow = [1]\nstall_ms = 50\n";
        let scenario = Scenario::parse(ok, Path::new(".")).unwrap();
        assert!(
            scenario.hedging,
            "hedging is on unless the scenario says otherwise"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = Scenario::parse("nodes = 2\nnoeds = 3\n", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(error.contains("noeds"), "{error}");
    }
}
