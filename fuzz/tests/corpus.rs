//! Replays the checked-in corpus (`corpus/<target>/*`) through every
//! target on stable Rust: the seeds stay meaningful, and a regression
//! found by fuzzing stays fixed once its input is added there.

use std::path::Path;

#[test]
fn every_corpus_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut ran = 0;
    for (name, target) in delayed_response_fuzz::targets::ALL {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no seeds for {name}");
        for file in files {
            let data = std::fs::read(&file).expect("a corpus file");
            eprintln!("{name}: {}", file.display());
            target(&data);
            ran += 1;
        }
    }
    assert!(ran > 0);
}
