//! Reading trades: which partitions this instance owns, how a record becomes a trade (or a
//! dead letter), and the per-partition task that feeds the windows and reports how far it
//! has read (the tick barrier waits on that).

use std::sync::Arc;

use odin_events::envelope::parse_record;
use odin_events::{Category, TradeRecord};
use odin_service::dlq::dead_letter;
use odin_service::{OutRecord, PartitionConsumer, StartFrom};
use rskafka::record::RecordAndOffset;
use rust_decimal::Decimal;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use crate::state::Core;
use crate::window::{InputPos, Inserted};

/// Largest price, amount or USD volume accepted (10¹⁸): keeps every window sum far from
/// the decimal type's 7.9·10²⁸ limit.
pub const MAX_VALUE: Decimal = Decimal::from_parts(0xA764_0000, 0x0DE0_B6B3, 0, false, 0);

/// One input partition read by this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Index of the topic in the configured input list (orders ties across topics).
    pub topic_index: u16,
    pub topic: String,
    pub partition: i32,
}

/// The partitions p with p mod `count` = `index` of every input topic (`(name, partitions)`).
pub fn assign(topics: &[(String, i32)], index: u32, count: u32) -> Vec<Assignment> {
    let count = i64::from(count.max(1));
    let mut out = Vec::new();
    for (i, (topic, partitions)) in topics.iter().enumerate() {
        for p in 0..*partitions {
            if i64::from(p) % count == i64::from(index) {
                out.push(Assignment {
                    topic_index: u16::try_from(i).unwrap_or(u16::MAX),
                    topic: topic.clone(),
                    partition: p,
                });
            }
        }
    }
    out
}

/// What a record turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    Trade(TradeRecord),
    /// A valid Odin event that is not a trade (e.g. on a single-topic layout): skipped.
    NotATrade,
}

/// Reads a record as a `trade-info` trade or an Odin trade event; `Err` is the reason it
/// goes to the dead-letter topic. `record_ts` stands in for an event without a time.
pub fn classify(
    value: Option<&[u8]>,
    key: Option<&[u8]>,
    record_ts: i64,
) -> Result<Classified, String> {
    let value = value.ok_or_else(|| "record has no value".to_owned())?;
    let trade = match TradeRecord::parse(value) {
        Ok(t) => t,
        Err(trade_err) => match parse_record(value, key) {
            Ok(event) if event.event_type.category() == Category::Trade => {
                TradeRecord::from_event(&event, record_ts).map_err(|e| e.to_string())?
            }
            Ok(_) => return Ok(Classified::NotATrade),
            // Neither format: the trade-info reason is the one an operator wants.
            Err(_) => return Err(trade_err.to_string()),
        },
    };
    for (field, v) in [
        ("price", trade.price),
        ("amount", trade.amount),
        ("volume_usd", trade.volume_usd.unwrap_or_default()),
    ] {
        if v > MAX_VALUE {
            return Err(format!("{field} {v} is above the limit {MAX_VALUE}"));
        }
    }
    Ok(Classified::Trade(trade))
}

/// How far a partition task has read, published after every fetch it has fully applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Clock time just before the fetch was issued.
    pub fetch_started_ms: i64,
    /// After that fetch, the position reached the high-watermark it reported.
    pub caught_up: bool,
}

impl Progress {
    /// Everything appended to the partition before `end` (clock time) has been applied.
    pub fn covers(&self, end: i64) -> bool {
        self.caught_up && self.fetch_started_ms >= end
    }
}

/// Reads one partition from the first record the first tick can use (found by timestamp)
/// until `cancel`.
pub async fn run_partition(
    core: Arc<Core>,
    a: Assignment,
    progress: watch::Sender<Progress>,
    cancel: CancellationToken,
) {
    // Its own client: a long-polling fetch blocks every other request on its connection.
    let client = match core
        .connector
        .client_with_retry(&core.health, &cancel)
        .await
    {
        Ok(c) => Arc::new(c),
        Err(_) => return,
    };
    let mut consumer = PartitionConsumer::new(
        client,
        a.topic.clone(),
        a.partition,
        StartFrom::Timestamp(core.replay_from_ms()),
        core.fetch,
    )
    .with_health(core.health.clone());
    let mut replaying = true;
    loop {
        let started = core.clock.now_ms();
        let batch = tokio::select! {
            _ = cancel.cancelled() => break,
            b = consumer.next_batch() => b,
        };
        let n = batch.records.len();
        apply(&core, &a, batch.records, replaying).await;
        let caught_up = consumer
            .position()
            .is_some_and(|p| p >= batch.high_watermark);
        if replaying && caught_up && started >= core.start_ms {
            replaying = false;
            info!(topic = %a.topic, partition = a.partition, position = ?consumer.position(), "replay complete");
        }
        debug!(topic = %a.topic, partition = a.partition, records = n, caught_up, "batch applied");
        metrics::gauge!("aggregator_consumer_lag", "topic" => a.topic.clone(), "partition" => a.partition.to_string())
            .set(consumer.lag() as f64);
        progress.send_replace(Progress {
            fetch_started_ms: started,
            caught_up,
        });
    }
}

/// Parses a fetched batch, adds its trades to the windows and dead-letters the rest (waiting
/// for the dead-letter acknowledgements so a record is never dropped unreported).
async fn apply(core: &Core, a: &Assignment, records: Vec<RecordAndOffset>, replaying: bool) {
    if records.is_empty() {
        return;
    }
    let now = core.clock.now_ms();
    let latest_allowed = now.saturating_add(core.settings.max_future_ms);
    let mut trades = Vec::with_capacity(records.len());
    let mut dead: Vec<OutRecord> = Vec::new();
    let mut not_trades = 0u64;
    for r in records {
        let ts = r.record.timestamp.timestamp_millis();
        let verdict = match classify(r.record.value.as_deref(), r.record.key.as_deref(), ts) {
            Ok(Classified::Trade(t)) if t.timestamp > latest_allowed => Err(format!(
                "timestamp {} is more than {} ms ahead of the clock ({now})",
                t.timestamp, core.settings.max_future_ms
            )),
            other => other,
        };
        match verdict {
            Ok(Classified::Trade(t)) => trades.push((
                t,
                InputPos {
                    topic: a.topic_index,
                    partition: a.partition,
                    offset: r.offset,
                },
            )),
            Ok(Classified::NotATrade) => not_trades += 1,
            Err(reason) => {
                debug!(topic = %a.topic, partition = a.partition, offset = r.offset, %reason, "invalid record");
                dead.push(dead_letter(
                    &a.topic,
                    a.partition,
                    r.offset,
                    r.record.key,
                    r.record.value.unwrap_or_default(),
                    ts,
                    &reason,
                ));
            }
        }
    }
    let (mut added, mut too_old) = (0u64, 0u64);
    {
        let mut w = core.windows().await;
        for (t, pos) in &trades {
            match w.insert(t, *pos) {
                Inserted::Added => added += 1,
                Inserted::TooOld => too_old += 1,
            }
        }
    }
    core.counters.trades.add(added);
    metrics::counter!("aggregator_trades_total").increment(added);
    if too_old > 0 {
        if replaying {
            core.counters.replay_skipped.add(too_old);
            metrics::counter!("aggregator_replay_skipped_total").increment(too_old);
        } else {
            core.counters.late.add(too_old);
            metrics::counter!("aggregator_trades_late_total").increment(too_old);
        }
    }
    if not_trades > 0 {
        core.counters.not_trades.add(not_trades);
        metrics::counter!("aggregator_records_ignored_total").increment(not_trades);
    }
    if dead.is_empty() {
        return;
    }
    let n = dead.len() as u64;
    core.counters.invalid.add(n);
    metrics::counter!("aggregator_records_invalid_total", "topic" => a.topic.clone()).increment(n);
    for r in core.producer.send_all(dead).await {
        if let Err(e) = r {
            core.counters.dlq_errors.add(1);
            metrics::counter!("aggregator_dlq_errors_total").increment(1);
            error!(topic = %a.topic, partition = a.partition, error = %e, "dead letter not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_value_is_ten_to_the_eighteenth() {
        assert_eq!(MAX_VALUE, Decimal::from(1_000_000_000_000_000_000i64));
    }

    #[test]
    fn assignment_splits_partitions() {
        let topics = [("a".to_owned(), 4), ("b".to_owned(), 3)];
        let zero = assign(&topics, 0, 2);
        let one = assign(&topics, 1, 2);
        let parts = |v: &[Assignment]| {
            v.iter()
                .map(|a| (a.topic.clone(), a.partition))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            parts(&zero),
            [
                ("a".into(), 0),
                ("a".into(), 2),
                ("b".into(), 0),
                ("b".into(), 2)
            ]
        );
        assert_eq!(
            parts(&one),
            [("a".into(), 1), ("a".into(), 3), ("b".into(), 1)]
        );
        assert_eq!(one[2].topic_index, 1);
        assert_eq!(assign(&topics, 0, 1).len(), 7);
    }

    #[test]
    fn classifies_trades_events_and_garbage() {
        let ok = br#"{"token":"BTC","side":"buy","price":"2","amount":"3","timestamp":5}"#;
        let Ok(Classified::Trade(t)) = classify(Some(ok), None, 0) else {
            panic!("trade expected")
        };
        assert_eq!(t.volume_usd.unwrap().to_string(), "6");

        let ev = br#"{"metadata":{"eventId":"e","eventType":"BUY_COMPLETED","timestamp":9,"tokenId":"ETH"},"data":{"price":"1","amount":"2"}}"#;
        let Ok(Classified::Trade(t)) = classify(Some(ev), None, 0) else {
            panic!("trade expected")
        };
        assert_eq!((t.token.as_str(), t.timestamp), ("ETH", 9));

        let other = br#"{"metadata":{"eventId":"e","eventType":"COMMENT_POSTED","timestamp":9,"tokenId":"ETH"},"data":{}}"#;
        assert_eq!(classify(Some(other), None, 0), Ok(Classified::NotATrade));

        let bad_event = br#"{"metadata":{"eventId":"e","eventType":"SELL_COMPLETED","timestamp":9,"tokenId":"ETH"},"data":{"price":"1","amount":"-2"}}"#;
        assert!(classify(Some(bad_event), None, 0)
            .unwrap_err()
            .contains("negative"));
        assert!(classify(None, None, 0).unwrap_err().contains("no value"));
        assert!(classify(Some(b"{oops"), None, 0).is_err());
        let huge = br#"{"token":"BTC","side":"buy","price":"1","amount":"1e19","volume_usd":"1","timestamp":5}"#;
        assert!(classify(Some(huge), None, 0).unwrap_err().contains("limit"));
    }

    #[test]
    fn progress_covers_only_fetches_after_end() {
        let p = Progress {
            fetch_started_ms: 10,
            caught_up: true,
        };
        assert!(p.covers(10));
        assert!(!p.covers(11));
        assert!(!Progress {
            fetch_started_ms: 20,
            caught_up: false
        }
        .covers(10));
    }
}
