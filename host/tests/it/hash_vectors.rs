//! The committed hash vectors are what the Go reference program prints today, so the vectors
//! the unit tests assert (host/src/api/vectors.rs) stay tied to Go's own encoders.

use std::process::Command;

#[test]
fn committed_vectors_match_the_go_program() {
    let dir = kfp_test_support::repo_root().join("tests/hash-vectors");
    let output = Command::new("go")
        .args(["run", "."])
        .current_dir(&dir)
        .env("GOWORK", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=readonly")
        .output()
        .unwrap_or_else(|e| panic!("running `go run .` in {}: {e}; install Go >= 1.26", dir.display()));
    assert!(output.status.success(), "the Go vector program failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let committed = std::fs::read_to_string(dir.join("vectors.txt")).unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), committed);
}
