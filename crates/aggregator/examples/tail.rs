//! Prints the records of a topic as JSON lines (for `aggregate-info`: one line per token per
//! tick), from the start or only new ones — a local stand-in for `kafka-console-consumer`.
//!
//! `cargo run -p aggregator --example tail -- [--brokers 127.0.0.1:19092] [--topic aggregate-info] [--from-beginning]`

use std::sync::Arc;

use odin_service::kafka::partition_counts;
use odin_service::{FetchSettings, KafkaConnector, PartitionConsumer, StartFrom};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "localhost:19092".into());
    let mut topic = std::env::var("AGGREGATE_TOPIC").unwrap_or_else(|_| "aggregate-info".into());
    let mut start = StartFrom::Latest;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--brokers" => brokers = args.next().unwrap_or(brokers),
            "--topic" => topic = args.next().unwrap_or(topic),
            "--from-beginning" => start = StartFrom::Earliest,
            other => {
                anyhow::bail!("unknown argument {other:?} (--brokers, --topic, --from-beginning)")
            }
        }
    }
    let connector = KafkaConnector::from_brokers(brokers.split(',').map(str::to_owned).collect());
    let admin = connector.client().await?;
    // An unfiltered list: a filtered metadata request would auto-create the topic on a broker
    // with `auto.create.topics.enable`.
    let partitions = *partition_counts(&admin)
        .await?
        .get(&topic)
        .ok_or_else(|| anyhow::anyhow!("topic {topic:?} does not exist"))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024); // full ⇒ readers wait
    for p in 0..partitions {
        let client = Arc::new(connector.client().await?);
        let mut c =
            PartitionConsumer::new(client, topic.clone(), p, start, FetchSettings::default());
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                for r in c.next_batch().await.records {
                    let value =
                        String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default())
                            .into_owned();
                    if tx.send(format!("{p}/{} {value}", r.offset)).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(l) => println!("{l}"),
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
