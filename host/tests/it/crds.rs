//! The committed CRD manifests are exactly what the Rust types generate.

use kfp_operator::api::crds;

#[test]
fn committed_crds_match_the_types() {
    let dir = kfp_test_support::chart_crd_dir();
    let mut expected_files = Vec::new();
    for crd in crds::all() {
        let name = crds::file_name(&crd);
        let generated = crds::to_yaml(&crd).unwrap();
        let committed = std::fs::read_to_string(dir.join(&name))
            .unwrap_or_else(|e| panic!("{name} is missing from {} ({e}): run `make crds`", dir.display()));
        assert!(
            committed == generated,
            "{name} differs from what the types in host/src/api generate: run `make crds` and commit the result"
        );
        expected_files.push(name);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(present, expected_files, "stray files in {}", dir.display());
}

/// The chart passes `helm lint --strict` and renders every CRD.
#[test]
fn the_chart_lints_and_renders_the_crds() {
    let helm = kfp_test_support::binaries::ensure().expect("the test control plane binaries").join("helm");
    let chart = kfp_test_support::repo_root().join("charts/kfp-operator");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(&helm).args(args).arg(&chart).output().expect("running helm");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "helm {args:?} failed:\n{stdout}{}", String::from_utf8_lossy(&output.stderr));
        stdout
    };
    run(&["lint", "--strict", "--kube-version", "1.36.3"]);
    let rendered = run(&["template", "kfp-operator", "--include-crds", "--kube-version", "1.36.3"]);
    for crd in crds::all() {
        let name = crd.metadata.name.unwrap();
        assert!(rendered.contains(&format!("name: {name}")), "{name} missing from the rendered chart");
    }
}
