//! The README's first command, end to end: `niji quickstart` on a fresh data directory, then
//! again on the same one (reruns cleanly; the dp answer comes from the cache).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

fn quickstart(data: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(env!("CARGO_BIN_EXE_niji"))
        .current_dir(&root)
        .args(["--data-dir"])
        .arg(data)
        .args(["quickstart", "--persons", "400", "--no-serve"])
        .env_remove("NIJI_PSEUDONYM_KEY")
        .env_remove("NIJI_EXTRACT_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "quickstart failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn quickstart_runs_every_mode_and_reruns_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let first = quickstart(dir.path());
    for expect in [
        "researcher token (shown once)",
        "[sdc]",
        "mode sdc",
        "[dp]",
        "mode dp · spent ε=0.5",
        "[extract]",
        "mode extract",
    ] {
        assert!(first.contains(expect), "missing `{expect}` in:\n{first}");
    }
    assert!(!first.contains("refused ("), "an example query was refused:\n{first}");
    let second = quickstart(dir.path());
    assert!(second.contains("cached answer, no new charge"), "{second}");
    assert!(!second.contains("refused ("), "{second}");
}
