//! Topic names, topic modes and the specs topics are created with.

use std::fmt;
use std::str::FromStr;

use crate::event::{Category, EventType, UnknownName};

/// Partitions of every event topic, `trade-info` and `aggregate-info`.
pub const DEFAULT_PARTITIONS: i32 = 12;
/// Partitions of a dead-letter topic: low volume, read by people.
pub const DLQ_PARTITIONS: i32 = 1;
/// Default name of the one topic in `single` mode.
pub const DEFAULT_SINGLE_TOPIC: &str = "odin.events";
/// Default topic of raw trades for the aggregator.
pub const DEFAULT_TRADE_INFO_TOPIC: &str = "trade-info";
/// Default topic of per-token aggregates.
pub const DEFAULT_AGGREGATE_INFO_TOPIC: &str = "aggregate-info";

const HOUR_MS: i64 = 3_600_000;
/// `trade-info` is replayed on aggregator start over the largest window (1 h) plus an
/// interval, so it keeps two hours.
pub const TRADE_INFO_RETENTION_MS: i64 = 2 * HOUR_MS;
/// Aggregates are kept a day.
pub const AGGREGATE_INFO_RETENTION_MS: i64 = 24 * HOUR_MS;
/// Dead letters are kept a week so that someone can look at them.
pub const DLQ_RETENTION_MS: i64 = 7 * 24 * HOUR_MS;
/// In single mode one topic carries every category: keep the longest category retention.
pub const SINGLE_TOPIC_RETENTION_MS: i64 = HOUR_MS;

/// The dead-letter topic of `topic`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// How events are laid out on topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TopicMode {
    /// One topic per category (`odin.trades`, …): the default.
    #[default]
    PerCategory,
    /// Every event on one topic, routed by the event type inside the record.
    Single,
}

impl TopicMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            TopicMode::PerCategory => "per-category",
            TopicMode::Single => "single",
        }
    }
}

impl fmt::Display for TopicMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TopicMode {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "per-category" | "per_category" | "percategory" => Ok(TopicMode::PerCategory),
            "single" => Ok(TopicMode::Single),
            _ => Err(UnknownName {
                kind: "topic mode",
                name: s.to_owned(),
            }),
        }
    }
}

/// What a topic is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub retention_ms: i64,
}

/// The seed's segment roll for the short-lived event topics: retention deletes whole
/// segments, so a 30 s topic needs segments of a few seconds to hold about 30 s.
pub const EVENT_SEGMENT_MS: i64 = 10_000;
/// The seed's topic settings, the same on every topic.
pub const CLEANUP_POLICY: &str = "delete";
pub const COMPRESSION_TYPE: &str = "snappy";
pub const MAX_MESSAGE_BYTES: i64 = 1_048_576;

impl TopicSpec {
    /// When a partition rolls to a new segment. The seed's 10 s on topics kept an hour or
    /// less (every event topic); longer-lived topics roll at a twelfth of their retention,
    /// because every segment is an open file on the broker and 10 s segments would keep
    /// 720 per partition of `trade-info` (2 h) and 60,480 of a dead-letter topic (7 d).
    pub fn segment_ms(&self) -> i64 {
        if self.retention_ms <= HOUR_MS {
            EVENT_SEGMENT_MS
        } else {
            self.retention_ms / 12
        }
    }

    /// The topic-level configs it is created with (Kafka's names; Redpanda accepts them too).
    pub fn configs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("retention.ms", self.retention_ms.to_string()),
            ("segment.ms", self.segment_ms().to_string()),
            ("cleanup.policy", CLEANUP_POLICY.to_owned()),
            ("compression.type", COMPRESSION_TYPE.to_owned()),
            ("max.message.bytes", MAX_MESSAGE_BYTES.to_string()),
        ]
    }
}

/// The topic names a deployment uses; every name can be overridden by configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicNames {
    pub mode: TopicMode,
    /// The one topic in single mode.
    pub single: String,
    /// The topic of each category in per-category mode, indexed by [`Category::index`].
    pub categories: [String; 8],
    pub trade_info: String,
    pub aggregate_info: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        Self::new(TopicMode::PerCategory)
    }
}

impl TopicNames {
    /// The default names for `mode`.
    pub fn new(mode: TopicMode) -> Self {
        Self {
            mode,
            single: DEFAULT_SINGLE_TOPIC.to_owned(),
            categories: Category::ALL.map(|c| c.default_topic().to_owned()),
            trade_info: DEFAULT_TRADE_INFO_TOPIC.to_owned(),
            aggregate_info: DEFAULT_AGGREGATE_INFO_TOPIC.to_owned(),
        }
    }

    /// The topic an event of type `t` is produced to.
    pub fn topic_for(&self, t: EventType) -> &str {
        match self.mode {
            TopicMode::PerCategory => &self.categories[t.category().index()],
            TopicMode::Single => &self.single,
        }
    }

    /// The topics carrying events: the eight category topics, or the single one.
    pub fn event_topics(&self) -> Vec<&str> {
        match self.mode {
            TopicMode::PerCategory => self.categories.iter().map(String::as_str).collect(),
            TopicMode::Single => vec![self.single.as_str()],
        }
    }

    /// The category a topic carries, or `None` for the single topic and unknown topics
    /// (then the event type inside the record decides).
    pub fn category_of_topic(&self, topic: &str) -> Option<Category> {
        match self.mode {
            TopicMode::PerCategory => Category::ALL
                .into_iter()
                .find(|c| self.categories[c.index()] == topic),
            TopicMode::Single => None,
        }
    }

    /// Specs of the event topics of the current mode.
    pub fn event_topic_specs(&self) -> Vec<TopicSpec> {
        match self.mode {
            TopicMode::PerCategory => Category::ALL
                .into_iter()
                .map(|c| TopicSpec {
                    name: self.categories[c.index()].clone(),
                    partitions: DEFAULT_PARTITIONS,
                    retention_ms: c.retention_ms(),
                })
                .collect(),
            TopicMode::Single => vec![TopicSpec {
                name: self.single.clone(),
                partitions: DEFAULT_PARTITIONS,
                retention_ms: SINGLE_TOPIC_RETENTION_MS,
            }],
        }
    }

    /// Every topic the system uses: event topics, `trade-info`, `aggregate-info`, and a
    /// dead-letter topic for each of those.
    pub fn all_specs(&self) -> Vec<TopicSpec> {
        let mut specs = self.event_topic_specs();
        specs.push(TopicSpec {
            name: self.trade_info.clone(),
            partitions: DEFAULT_PARTITIONS,
            retention_ms: TRADE_INFO_RETENTION_MS,
        });
        specs.push(TopicSpec {
            name: self.aggregate_info.clone(),
            partitions: DEFAULT_PARTITIONS,
            retention_ms: AGGREGATE_INFO_RETENTION_MS,
        });
        let dlqs: Vec<TopicSpec> = specs
            .iter()
            .map(|s| TopicSpec {
                name: dlq_topic(&s.name),
                partitions: DLQ_PARTITIONS,
                retention_ms: DLQ_RETENTION_MS,
            })
            .collect();
        specs.extend(dlqs);
        specs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_follow_the_seed_and_keep_segments_few() {
        let specs = TopicNames::default().all_specs();
        let trades = specs.iter().find(|s| s.name == "odin.trades").unwrap();
        assert_eq!(
            trades.configs(),
            vec![
                ("retention.ms", "30000".to_owned()),
                ("segment.ms", "10000".to_owned()),
                ("cleanup.policy", "delete".to_owned()),
                ("compression.type", "snappy".to_owned()),
                ("max.message.bytes", "1048576".to_owned()),
            ]
        );
        let trade_info = specs.iter().find(|s| s.name == "trade-info").unwrap();
        assert_eq!(trade_info.segment_ms(), 600_000);
        for s in &specs {
            assert!(s.retention_ms / s.segment_ms() <= 360, "{s:?}");
        }
    }

    #[test]
    fn per_category_specs_match_the_contract() {
        let names = TopicNames::default();
        let specs = names.event_topic_specs();
        assert_eq!(specs.len(), 8);
        assert!(specs.iter().all(|s| s.partitions == 12));
        let retention = |n: &str| specs.iter().find(|s| s.name == n).unwrap().retention_ms;
        assert_eq!(retention("odin.trades"), 30_000);
        assert_eq!(retention("odin.liquidity"), 60_000);
        assert_eq!(retention("odin.metadata"), 3_600_000);
        assert_eq!(retention("odin.social"), 3_600_000);
        assert_eq!(retention("odin.community"), 300_000);
        assert_eq!(retention("odin.creation"), 3_600_000);
        assert_eq!(retention("odin.analytics"), 300_000);
        assert_eq!(retention("odin.balances"), 30_000);
        let all = names.all_specs();
        assert_eq!(all.len(), 20);
        assert!(all
            .iter()
            .any(|s| s.name == "trade-info" && s.retention_ms >= 7_200_000));
        assert!(all.iter().any(|s| s.name == "aggregate-info.dlq"));
        assert!(all.iter().any(|s| s.name == "odin.trades.dlq"));
    }

    #[test]
    fn routing_by_mode() {
        let per = TopicNames::default();
        assert_eq!(per.topic_for(EventType::BalanceUpdated), "odin.balances");
        assert_eq!(per.category_of_topic("odin.social"), Some(Category::Social));
        assert_eq!(per.category_of_topic("elsewhere"), None);
        let single = TopicNames::new("single".parse().unwrap());
        assert_eq!(single.topic_for(EventType::BalanceUpdated), "odin.events");
        assert_eq!(single.event_topics(), vec!["odin.events"]);
        assert_eq!(single.category_of_topic("odin.events"), None);
        assert!("both".parse::<TopicMode>().is_err());
    }
}
