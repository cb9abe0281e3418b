//! Renders `clients/typescript/src/generated.ts` — the TypeScript client's event types,
//! categories and bundles — from `odin-events` and `bundles`, and fails when the committed
//! file differs, so the Rust and TypeScript definitions cannot drift apart.
//!
//! Regenerate with `ODIN_REGENERATE_TS=1 cargo test -p bundles --test typescript`.

use std::fmt::Write as _;
use std::path::PathBuf;

use bundles::{Bundle, DEFAULT_MAX_CHANNELS};
use odin_events::token::MAX_TOKEN_LEN;
use odin_events::{Category, EventType, WILDCARD_TOKEN};

const REGENERATE: &str = "ODIN_REGENERATE_TS=1 cargo test -p bundles --test typescript";

fn target() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/typescript/src/generated.ts")
}

fn quoted<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The whole file; deterministic (canonical orders of `ALL`), plain TypeScript.
fn render() -> String {
    let mut s = String::new();
    let w = &mut s;
    // `write!` to a String cannot fail.
    let _ = writeln!(
        w,
        "// Generated from crates/odin-events and crates/bundles by"
    );
    let _ = writeln!(
        w,
        "// crates/bundles/tests/typescript.rs. Do not edit by hand; regenerate with"
    );
    let _ = writeln!(w, "//   {REGENERATE}");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "/** The eight categories: each is a channel suffix (`BTC.trade`). */"
    );
    let _ = writeln!(
        w,
        "export const CATEGORIES = [{}] as const;",
        quoted(Category::ALL.map(Category::as_str))
    );
    let _ = writeln!(w, "export type Category = (typeof CATEGORIES)[number];");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "/** The {} event types, grouped by category in canonical order. */",
        EventType::ALL.len()
    );
    let _ = writeln!(w, "export const EVENT_TYPES = [");
    for t in EventType::ALL {
        let _ = writeln!(w, "  {:?},", t.as_str());
    }
    let _ = writeln!(w, "] as const;");
    let _ = writeln!(w, "export type EventType = (typeof EVENT_TYPES)[number];");
    let _ = writeln!(w);
    let _ = writeln!(w, "/** The event types of each category. */");
    let _ = writeln!(w, "export interface EventTypesByCategory {{");
    for c in Category::ALL {
        let types: Vec<String> = c
            .event_types()
            .map(|t| format!("{:?}", t.as_str()))
            .collect();
        let _ = writeln!(w, "  {}: {};", c.as_str(), types.join(" | "));
    }
    let _ = writeln!(w, "}}");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "/** The category (and so the channel suffix) of each event type. */"
    );
    let _ = writeln!(
        w,
        "export const EVENT_CATEGORY: {{ readonly [T in EventType]: Category }} = {{"
    );
    for t in EventType::ALL {
        let _ = writeln!(w, "  {}: {:?},", t.as_str(), t.category().as_str());
    }
    let _ = writeln!(w, "}};");
    let _ = writeln!(w);
    let _ = writeln!(w, "/** Subscription bundles: named sets of categories. */");
    let _ = writeln!(
        w,
        "export const BUNDLES = [{}] as const;",
        quoted(Bundle::ALL.map(Bundle::as_str))
    );
    let _ = writeln!(w, "export type BundleName = (typeof BUNDLES)[number];");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "/** The categories of each bundle, in the order the contract lists them. */"
    );
    let _ = writeln!(
        w,
        "export const BUNDLE_CATEGORIES: {{ readonly [B in BundleName]: readonly Category[] }} = {{"
    );
    for b in Bundle::ALL {
        let cats = quoted(b.categories().iter().map(|c| c.as_str()));
        let _ = writeln!(w, "  {}: [{cats}],", b.as_str());
    }
    let _ = writeln!(w, "}};");
    let _ = writeln!(w);
    let _ = writeln!(w, "/** The token that means every token: `*.creation`. */");
    let _ = writeln!(w, "export const WILDCARD_TOKEN = {WILDCARD_TOKEN:?};");
    let _ = writeln!(
        w,
        "/** Longest token id; tokens are 1–{MAX_TOKEN_LEN} of `[A-Za-z0-9_:-]`. */"
    );
    let _ = writeln!(w, "export const MAX_TOKEN_LEN = {MAX_TOKEN_LEN};");
    let _ = writeln!(
        w,
        "/** Default cap on the channels one connection may hold. */"
    );
    let _ = writeln!(
        w,
        "export const DEFAULT_MAX_CHANNELS = {DEFAULT_MAX_CHANNELS};"
    );
    s
}

#[test]
fn typescript_definitions_match_the_rust_ones() {
    let path = target();
    let want = render();
    if std::env::var_os("ODIN_REGENERATE_TS").is_some() {
        std::fs::write(&path, &want)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} differs from the Rust definitions in odin-events/bundles; regenerate it with\n  {REGENERATE}\nand commit the result",
        path.display()
    );
}

#[test]
fn rendering_covers_every_type_category_and_bundle() {
    let ts = render();
    for t in EventType::ALL {
        assert!(ts.contains(&format!("{}: {:?}", t.as_str(), t.category().as_str())));
    }
    for b in Bundle::ALL {
        assert!(ts.contains(&format!("  {}: [", b.as_str())));
    }
    assert!(ts.contains("export const DEFAULT_MAX_CHANNELS = 1000;"));
}
