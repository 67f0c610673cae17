//! Replays the fuzzers' corpus and every input that ever crashed them (fuzz/corpus/,
//! fuzz/regressions/) through the same harnesses, on stable Rust, as part of `cargo test`.

use std::fs;
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let mut count = 0;
    for dir in [
        format!("fuzz/corpus/{target}"),
        format!("fuzz/regressions/{target}"),
    ] {
        let Ok(entries) = fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = fs::read(entry.path()).unwrap();
            run(&data);
            count += 1;
        }
    }
    count
}

#[test]
fn the_codec_corpus_replays_without_a_crash() {
    let count = replay("codec", rollcall::hub::fuzz::codec);
    assert!(count > 0, "the corpus is missing");
}

#[test]
fn the_hub_corpus_replays_without_a_crash() {
    let count = replay("hub", rollcall::hub::fuzz::hub);
    assert!(count > 0, "the corpus is missing");
}
