//! Ingest throughput of the window code on one core: parse alone, insert alone, parse +
//! insert per record as the ingest task does, and the cost of one tick's snapshot.
//!
//! `cargo run --release -p aggregator --example window_bench [trades] [tokens]`

use std::time::Instant;

use aggregator::ingest::{classify, Classified};
use aggregator::window::{InputPos, WindowSpec, Windows};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let tokens: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let windows: Vec<WindowSpec> = ["1min", "5min", "15min", "30min", "1hour"]
        .iter()
        .filter_map(|w| aggregator::config::parse_window(w).ok())
        .collect();
    let end: i64 = 1_800_000_000_000;
    let hour = 3_600_000;
    let mut seed = 42u64;
    let mut rnd = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        seed >> 33
    };
    let records: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let t = end - hour + 1 + (i as i64 * hour / n as i64);
            format!(
                r#"{{"token":"0x{:040x}","side":"{}","price":"0.000{}","amount":"{}.{}","volume_usd":"{}.{}","timestamp":{t},"tx_hash":"0x{i:x}"}}"#,
                rnd() % tokens as u64,
                if rnd() % 2 == 0 { "buy" } else { "sell" },
                100 + rnd() % 900,
                rnd() % 10_000,
                rnd() % 1000,
                rnd() % 100,
                rnd() % 100,
            )
            .into_bytes()
        })
        .collect();

    let pos = |i: usize| InputPos {
        topic: 0,
        partition: 0,
        offset: i as i64,
    };
    let fresh = || Windows::new(windows.clone(), 1_000, end - hour - 1_000);

    // Parse alone: each trade dropped at once, as the service does after inserting it.
    let started = Instant::now();
    let mut ok = 0usize;
    for r in &records {
        if let Ok(Classified::Trade(t)) = classify(Some(r), None, 0) {
            ok += usize::from(std::hint::black_box(&t).timestamp > 0);
        }
    }
    let parse_s = started.elapsed().as_secs_f64();
    assert_eq!(ok, n, "every generated record parses");

    // Insert alone, from trades parsed beforehand.
    let parsed: Vec<_> = records
        .iter()
        .filter_map(|r| match classify(Some(r), None, 0) {
            Ok(Classified::Trade(t)) => Some(t),
            _ => None,
        })
        .collect();
    let mut w = fresh();
    let started = Instant::now();
    for (i, t) in parsed.iter().enumerate() {
        w.insert(t, pos(i));
    }
    let insert_s = started.elapsed().as_secs_f64();
    drop(parsed);

    // What the ingest task does per record: parse, insert, drop.
    let mut w = fresh();
    let started = Instant::now();
    for (i, r) in records.iter().enumerate() {
        if let Ok(Classified::Trade(t)) = classify(Some(r), None, 0) {
            w.insert(&t, pos(i));
        }
    }
    let ingest_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let snap = w.snapshot(end, None, "bench");
    let snap_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let bytes: usize = snap.iter().map(|d| d.to_json().len()).sum();
    let json_s = started.elapsed().as_secs_f64();

    println!("trades {n}, tokens {tokens}, windows 1min..1hour, 1 s buckets");
    println!(
        "parse (trade-info JSON → TradeRecord): {:.0} trades/s ({:.2} s)",
        n as f64 / parse_s,
        parse_s
    );
    println!(
        "insert into windows:                  {:.0} trades/s ({:.2} s)",
        n as f64 / insert_s,
        insert_s
    );
    println!(
        "parse + insert (one core, as ingest):  {:.0} trades/s ({:.2} s)",
        n as f64 / ingest_s,
        ingest_s
    );
    println!(
        "state: {} tokens, {} buckets; tick snapshot {:.1} ms for {} tokens, JSON {:.1} ms ({} bytes)",
        w.token_count(),
        w.bucket_count(),
        snap_s * 1000.0,
        snap.len(),
        json_s * 1000.0,
        bytes
    );
}
