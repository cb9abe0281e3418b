//! Producer wiring: turns an event into its record (and its `trade-info` mirror), queues both
//! on the batching producer and settles their acknowledgements. Ingested and simulated
//! events take this same path, so they are keyed, routed and mirrored identically.

use std::collections::BTreeSet;

use odin_events::envelope::SOURCE_PUBLISHER;
use odin_events::{
    Classification, Envelope, EventType, Metadata, TopicNames, TradeRecord, EVENT_VERSION,
};
use odin_service::{Delivery, OutRecord, ProduceError, Producer};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::stats::{Source, Stats};

/// Parts of an event before it is wrapped; shared by ingestion and the simulator.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: EventType,
    pub token_id: String,
    pub data: Map<String, Value>,
    pub user_id: Option<String>,
    pub correlation_id: Option<String>,
    pub classification: Option<Classification>,
    /// Event time (epoch ms); now when absent.
    pub timestamp: Option<i64>,
}

/// An event ready to produce: its envelope and, for trades, its `trade-info` record.
#[derive(Debug, Clone)]
pub struct ReadyEvent {
    pub envelope: Envelope,
    pub trade: Option<TradeRecord>,
}

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl NewEvent {
    /// Wraps the event in the envelope (new uuid v4 id, classification defaulted by type)
    /// and maps trades to their `trade-info` record; the error says why a trade cannot be
    /// mapped.
    pub fn into_ready(self) -> Result<ReadyEvent, String> {
        let event_id = uuid::Uuid::new_v4().to_string();
        let timestamp = self.timestamp.unwrap_or_else(now_ms);
        let trade = if self.event_type.is_trade() {
            Some(
                TradeRecord::from_event_data(
                    self.event_type,
                    &self.token_id,
                    &self.data,
                    timestamp,
                    Some(&event_id),
                )
                .map_err(|e| format!("cannot map to a trade record: {e}"))?,
            )
        } else {
            None
        };
        let envelope = Envelope {
            metadata: Metadata {
                correlation_id: self.correlation_id.unwrap_or_else(|| event_id.clone()),
                event_id,
                event_type: self.event_type,
                event_version: EVENT_VERSION.to_owned(),
                timestamp,
                source: SOURCE_PUBLISHER.to_owned(),
                data_classification: self
                    .classification
                    .unwrap_or_else(|| Classification::default_for(self.event_type)),
                token_id: self.token_id,
                user_id: self.user_id,
            },
            data: self.data,
        };
        Ok(ReadyEvent { envelope, trade })
    }
}

type AckRx = oneshot::Receiver<Result<Delivery, ProduceError>>;

/// An event whose records are queued; [`Pending::settle`] waits for the broker.
#[derive(Debug)]
pub struct Pending {
    pub event_id: String,
    event_type: EventType,
    topic: String,
    event: AckRx,
    mirror: Option<(String, AckRx)>,
}

impl Pending {
    /// Waits for both acknowledgements; the event counts as published only when the event
    /// record and its mirror were both acknowledged.
    pub async fn settle(self, stats: &Stats, source: Source) -> Result<Delivery, ProduceError> {
        let event = self.event.await.unwrap_or(Err(ProduceError::Closed));
        let mirror = match self.mirror {
            Some((topic, rx)) => Some((topic, rx.await.unwrap_or(Err(ProduceError::Closed)))),
            None => None,
        };
        match (event, mirror) {
            (Ok(d), None) => {
                stats.published(source, self.event_type, &self.topic, None);
                Ok(d)
            }
            (Ok(d), Some((topic, Ok(_)))) => {
                stats.published(source, self.event_type, &self.topic, Some(&topic));
                Ok(d)
            }
            (Err(e), _) | (Ok(_), Some((_, Err(e)))) => {
                stats.failed(source);
                Err(e)
            }
        }
    }
}

/// The producer side of the publisher.
#[derive(Debug, Clone)]
pub struct Sink {
    /// One producer per broker connection; a key always uses the same one, so per-token
    /// order holds while connections produce in parallel (a broker serves one request at a
    /// time per connection).
    producers: Vec<Producer>,
    names: TopicNames,
    /// `None` disables the mirror.
    trade_info: Option<String>,
}

impl Sink {
    /// `producers` must not be empty.
    pub fn new(producers: Vec<Producer>, names: TopicNames, trade_info: Option<String>) -> Self {
        Self {
            producers,
            names,
            trade_info,
        }
    }

    /// The first producer (health, ping).
    pub fn producer(&self) -> &Producer {
        &self.producers[0]
    }

    pub fn producers(&self) -> &[Producer] {
        &self.producers
    }

    fn producer_for(&self, key: &[u8]) -> &Producer {
        let i = (odin_events::murmur2(key) as u32 as usize) % self.producers.len();
        &self.producers[i]
    }

    pub fn names(&self) -> &TopicNames {
        &self.names
    }

    pub fn trade_info(&self) -> Option<&str> {
        self.trade_info.as_deref()
    }

    /// Every topic this sink writes to.
    pub fn topics(&self) -> Vec<&str> {
        let mut t = self.names.event_topics();
        t.extend(self.trade_info.as_deref());
        t
    }

    /// Checks that every topic `events` need exists (from the producer's cache, or one
    /// metadata request), so a batch fails as a whole before anything is produced.
    pub async fn check_topics(&self, events: &[ReadyEvent]) -> Result<(), ProduceError> {
        let mut topics = BTreeSet::new();
        for e in events {
            topics.insert(self.names.topic_for(e.envelope.metadata.event_type));
            if e.trade.is_some() {
                topics.extend(self.trade_info.as_deref());
            }
        }
        for t in topics {
            for p in &self.producers {
                p.partition_count(t).await?;
            }
        }
        Ok(())
    }

    /// Queues the event's records; waits only when the partition queue is full.
    pub async fn enqueue(&self, event: ReadyEvent) -> Result<Pending, ProduceError> {
        let env = &event.envelope;
        let t = env.metadata.event_type;
        let topic = self.names.topic_for(t).to_owned();
        let mut rec = OutRecord::new(
            topic.clone(),
            Some(env.key().to_vec()),
            env.to_json(),
            env.metadata.timestamp,
        );
        for (k, v) in env.headers() {
            rec = rec.header(k, v);
        }
        let mirror_rec = match (&event.trade, &self.trade_info) {
            (Some(trade), Some(ti)) => Some(OutRecord::new(
                ti.clone(),
                Some(trade.token.as_bytes().to_vec()),
                trade.to_json(),
                trade.timestamp,
            )),
            _ => None,
        };
        let producer = self.producer_for(env.key());
        let event_rx = producer.enqueue(rec).await?;
        let mirror = match mirror_rec {
            Some(r) => Some((r.topic.clone(), producer.enqueue(r).await?)),
            None => None,
        };
        Ok(Pending {
            event_id: event.envelope.metadata.event_id,
            event_type: t,
            topic,
            event: event_rx,
            mirror,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn new_event(t: EventType, data: Value) -> NewEvent {
        NewEvent {
            event_type: t,
            token_id: "BTC".into(),
            data: data.as_object().cloned().unwrap(),
            user_id: None,
            correlation_id: None,
            classification: None,
            timestamp: Some(42),
        }
    }

    #[test]
    fn wraps_and_mirrors_trades() {
        let r = new_event(
            EventType::TradeExecuted,
            json!({"price": "2.5", "amount": 4, "side": "sell", "txHash": "0xab"}),
        )
        .into_ready()
        .unwrap();
        let m = &r.envelope.metadata;
        assert_eq!(m.correlation_id, m.event_id);
        assert_eq!(m.data_classification, Classification::Public);
        assert_eq!(m.timestamp, 42);
        uuid::Uuid::parse_str(&m.event_id).unwrap();
        let t = r.trade.unwrap();
        assert_eq!((t.token.as_str(), t.tx_hash.as_str()), ("BTC", "0xab"));
        assert_eq!(t.volume_usd().to_string(), "10.0");

        let b = new_event(
            EventType::BalanceUpdated,
            json!({"address": "0x1", "balance": 1}),
        )
        .into_ready()
        .unwrap();
        assert!(b.trade.is_none());
        assert_eq!(
            b.envelope.metadata.data_classification,
            Classification::Restricted
        );
    }

    #[test]
    fn unmappable_trades_are_refused() {
        let e = new_event(EventType::BuyCompleted, json!({"price": "-1", "amount": 1}))
            .into_ready()
            .unwrap_err();
        assert!(e.contains("negative"), "{e}");
    }
}
