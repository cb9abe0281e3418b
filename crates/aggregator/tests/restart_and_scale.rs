//! Restart and scale-out without a database: an instance restarted mid-stream publishes the
//! same next tick as an uninterrupted one, and two instances splitting the partitions
//! publish, together, exactly what one instance publishes.

mod common;

use common::*;
use odin_events::partition_for_key;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_stream_publishes_what_an_uninterrupted_run_does() {
    let broker = testkit::shared();
    let input = testkit::unique_topic("trades");
    let out_steady = testkit::unique_topic("agg-steady");
    let out_restarted = testkit::unique_topic("agg-restarted");
    topics(broker, &input, 4, &[&out_steady, &out_restarted]).await;
    let p = producer(broker);
    let mut rng = Lcg(11);
    let tokens = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"];

    let mut trades = Vec::new();
    for tok in tokens {
        trades.extend(random_trades(&mut rng, tok, 30, E1 - HOUR - MIN, E1));
    }
    produce(&p, &input, &trades).await;

    let steady = Svc::start(broker, &input, &out_steady, E1 - 500, &[]).await;
    let first = Svc::start(broker, &input, &out_restarted, E1 - 500, &[]).await;
    steady.wait_replayed().await;
    first.wait_replayed().await;
    let mut read_steady = Reader::new(broker, &out_steady, 3).await;
    let mut read_restarted = Reader::new(broker, &out_restarted, 3).await;

    steady.clock.set(E1);
    first.clock.set(E1);
    let want = reference(&trades, E1);
    let a = read_steady.tick(E1, want.len()).await;
    let b = read_restarted.tick(E1, want.len()).await;
    assert_matches(&a, &want, E1);
    assert_eq!(strip(&a), strip(&b));

    // Mid-stream: trades arrive (late ones included) while the first instance is stopped,
    // both before and after it goes.
    let mut before_stop = Vec::new();
    for tok in tokens {
        before_stop.extend(random_trades(&mut rng, tok, 10, E1 - HOUR + SEC, E1 + SEC));
    }
    produce(&p, &input, &before_stop).await;
    first.stop().await;
    let mut while_down = Vec::new();
    for tok in tokens {
        while_down.extend(random_trades(&mut rng, tok, 10, E1 - 30 * MIN, E1 + SEC));
    }
    // Too old for any later tick: must be ignored by both (late / skipped on replay).
    while_down.push(T::new("AAA", true, "99", "99", "99", E1 - HOUR));
    produce(&p, &input, &while_down).await;
    trades.extend(before_stop);
    trades.extend(while_down.into_iter().filter(|t| t.t > E1 - HOUR));

    let second = Svc::start(broker, &input, &out_restarted, E1 + 300, &[]).await;
    second.wait_replayed().await;
    let e2 = E1 + SEC;
    steady.clock.set(e2);
    second.clock.set(e2);
    let want = reference(&trades, e2);
    let a = read_steady.tick(e2, want.len()).await;
    let b = read_restarted.tick(e2, want.len()).await;
    assert_matches(&a, &want, e2);
    assert_eq!(
        strip(&a),
        strip(&b),
        "restarted instance differs at its first tick"
    );

    // The restarted instance skipped old trades as replay, the steady one saw one as late.
    let s = second.stats().await;
    assert_eq!(s["trades_late"], 0, "{s}");
    assert!(s["replay_skipped"].as_u64().unwrap() > 0, "{s}");
    let s = steady.stats().await;
    assert_eq!(s["trades_late"], 1, "{s}");
    steady.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_together_equal_one() {
    let broker = testkit::shared();
    let input = testkit::unique_topic("trades");
    let out_split = testkit::unique_topic("agg-split");
    let out_single = testkit::unique_topic("agg-single");
    topics(broker, &input, 4, &[&out_split, &out_single]).await;
    let p = producer(broker);
    let mut rng = Lcg(23);
    let tokens: Vec<String> = (0..12).map(|i| format!("TOK{i}")).collect();
    let parities: std::collections::BTreeSet<i32> = tokens
        .iter()
        .map(|t| partition_for_key(t.as_bytes(), 4) % 2)
        .collect();
    assert_eq!(parities.len(), 2, "tokens must land on both instances");

    let mut trades = Vec::new();
    for tok in &tokens {
        trades.extend(random_trades(&mut rng, tok, 20, E1 - HOUR, E1));
    }
    produce(&p, &input, &trades).await;

    let single = Svc::start(broker, &input, &out_single, E1 - 500, &[]).await;
    let zero = Svc::start(
        broker,
        &input,
        &out_split,
        E1 - 500,
        &["--instance-index", "0", "--instance-count", "2"],
    )
    .await;
    let one = Svc::start(
        broker,
        &input,
        &out_split,
        E1 - 500,
        &["--instance-index", "1", "--instance-count", "2"],
    )
    .await;
    for s in [&single, &zero, &one] {
        s.wait_replayed().await;
    }
    let mut read_single = Reader::new(broker, &out_single, 3).await;
    let mut read_split = Reader::new(broker, &out_split, 3).await;
    for s in [&single, &zero, &one] {
        s.clock.set(E1);
    }
    let want = reference(&trades, E1);
    let a = read_single.tick(E1, want.len()).await;
    let b = read_split.tick(E1, want.len()).await;
    assert_matches(&a, &want, E1);
    assert_eq!(strip(&a), strip(&b));
    // Nothing published twice: each token came from exactly one instance.
    assert_eq!(read_split.records.len(), want.len());

    let s0 = zero.stats().await;
    let s1 = one.stats().await;
    let parts = |s: &serde_json::Value| -> Vec<i64> {
        s["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["partition"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(parts(&s0), [0, 2]);
    assert_eq!(parts(&s1), [1, 3]);
    let ingested = |s: &serde_json::Value| s["trades_ingested"].as_u64().unwrap();
    assert!(ingested(&s0) > 0 && ingested(&s1) > 0);
    assert_eq!(ingested(&s0) + ingested(&s1), trades.len() as u64);
    for s in [single, zero, one] {
        s.stop().await;
    }
}
