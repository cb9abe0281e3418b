//! A deterministic trade stream through the running aggregator (real broker), compared with
//! an independent reference for every window and field: window boundaries, out-of-order and
//! late trades, replay of what was there before start, and exact decimals on tiny amounts.

mod common;

use common::*;
use odin_events::partition_for_key;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_match_the_reference_computation() {
    let broker = testkit::shared();
    let input = testkit::unique_topic("trades");
    let output = testkit::unique_topic("aggregates");
    topics(broker, &input, 4, &[&output]).await;
    let p = producer(broker);
    let mut rng = Lcg(7);
    let tokens = ["AAA", "BBB", "CCC", "DDD", "0xe5"];

    // Before start (read by replay): an hour and more of shuffled trades per token,
    // some after the first tick (in the future of E1, inside the tolerance).
    let mut trades: Vec<T> = Vec::new();
    for (i, tok) in tokens.iter().enumerate() {
        trades.extend(random_trades(
            &mut rng,
            tok,
            40 + 10 * i,
            E1 - HOUR - 2 * MIN,
            E1 + 3 * SEC,
        ));
    }
    // Exactly at the start of each window (out) and exactly at the end (in), and ties.
    for (_, w) in WINDOWS {
        trades.push(T::new("AAA", true, "1", "1", "1", E1 - w));
        trades.push(T::new("AAA", false, "2", "0.5", "1", E1 - w + 1));
    }
    trades.push(T::new("BBB", true, "3", "1", "3", E1));
    trades.push(T::new("BBB", false, "5", "1", "5", E1));
    trades.push(T::new("BBB", true, "4", "1", "4", E1 - 30 * SEC));
    trades.push(T::new("BBB", true, "6", "1", "6", E1 - 30 * SEC));
    // Many tiny amounts: sums must be exact.
    for k in 0..1000 {
        trades.push(T::new(
            "TINY",
            k % 2 == 0,
            "0.000000123",
            "0.000000000000000001",
            "0.1",
            E1 - 2 * MIN + k,
        ));
    }
    // Only outside every window: never active at E1.
    trades.push(T::new("OLD", true, "1", "1", "1", E1 - HOUR - 5 * SEC));
    produce(&p, &input, &trades).await;

    let svc = Svc::start(broker, &input, &output, E1 - 500, &[]).await;
    svc.wait_replayed().await;

    // Live, before the tick: more shuffled trades.
    let mut live = Vec::new();
    for tok in tokens {
        live.extend(random_trades(&mut rng, tok, 15, E1 - 20 * MIN, E1));
    }
    produce(&p, &input, &live).await;
    trades.extend(live);

    let mut out = Reader::new(broker, &output, 3).await;
    svc.clock.set(E1);
    let want = reference(&trades, E1);
    let got = out.tick(E1, want.len()).await;
    assert!(!got.contains_key("OLD"));
    assert_matches(&got, &want, E1);

    let tiny = &got["TINY"].aggregate_data;
    assert_eq!(
        tiny[0].time_window, "5min",
        "no TINY trade in the last minute"
    );
    assert_eq!(
        tiny[0].buy_volume.normalize().to_string(),
        "0.0000000000000005"
    );
    assert_eq!(
        tiny[0].total_volume.normalize().to_string(),
        "0.000000000000001"
    );
    assert_eq!(tiny[0].volume_usd.normalize().to_string(), "100");
    assert_eq!(tiny[0].total_trades, 1000);

    let bbb = &got["BBB"].aggregate_data[0];
    assert_eq!(bbb.time_window, "1min");
    assert_eq!(
        bbb.close_price.to_string(),
        "5",
        "equal times: later input wins close"
    );

    // Records: keyed by token on the partitioner's partition, with the contract headers.
    for r in &out.records {
        let key = r.key.clone().unwrap();
        assert_eq!(r.partition, partition_for_key(&key, 3));
        assert_eq!(r.headers["content-type"], b"application/json");
        assert_eq!(r.headers["version"], b"1.0");
        assert_eq!(r.headers["token"], key);
    }

    // After the tick: late trades inside the windows count at the next tick; trades at or
    // before E1 − 1h can never count again and are dropped as late.
    let late = vec![
        T::new("CCC", true, "9", "2", "18", E1 - 10 * SEC),
        T::new("CCC", false, "8", "1", "8", E1 - 59 * MIN),
        T::new("DDD", true, "7", "1", "7", E1 - HOUR),
        T::new("DDD", true, "7", "1", "7", E1 - 2 * HOUR),
        T::new("NEW", false, "1.5", "4", "6", E1 + SEC),
    ];
    produce(&p, &input, &late).await;
    trades.extend(late.into_iter().filter(|t| t.t > E1 - HOUR));

    let e2 = E1 + SEC;
    svc.clock.set(e2);
    let want = reference(&trades, e2);
    let got = out.tick(e2, want.len()).await;
    assert_matches(&got, &want, e2);
    assert!(got.contains_key("NEW"));

    let sent = out.records.len() as u64;
    let stats = svc
        .stats_until("both ticks counted", |s| {
            s["ticks"] == 2 && s["producer"]["messages_sent"] == sent
        })
        .await;
    assert_eq!(stats["trades_late"], 2, "{stats}");
    assert_eq!(stats["records_invalid"], 0, "{stats}");
    assert_eq!(stats["producer"]["messages_error"], 0, "{stats}");
    svc.stop().await;
}
