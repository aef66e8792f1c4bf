//! What a newcomer meets in the first hour (issue 17): a preflight that speaks at once, errors
//! that name the real cause and the flag, no driver noise, and an eval that computes what
//! applies.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{afinador, command, one_line_error, repo, scratch, tiny_model};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The first `n` ENEM training records in `dir/data.jsonl`.
fn enem(dir: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(repo().join("examples/enem/train.jsonl")).unwrap();
    let path = dir.join("data.jsonl");
    std::fs::write(&path, text.lines().take(n).collect::<Vec<_>>().join("\n")).unwrap();
    path.to_str().unwrap().into()
}

#[test]
fn preflight_prints_its_plan_before_timing_and_shows_the_timing_progress() {
    let dir = scratch("preflight");
    let (model, data) = (tiny_model(&dir), enem(&dir, 12));
    let model = model.to_str().unwrap();
    // stdout and stderr into one pipe, so the order in which a person sees them is kept.
    let script = format!(
        "exec \"$0\" preflight --model {model} --data {data} --batch-size 2 --grad-accum 2 \
         --seq-len 96 --train-on-prompt 2>&1"
    );
    let out = Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_afinador")])
        .current_dir(repo())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{text}"))
    };
    // The plan and the data statistics come first, then the timing with its progress lines and
    // an estimate of the timed run, then the time per step.
    assert!(
        at("memory plan") < at("timing: compiling the kernels"),
        "{text}"
    );
    assert!(at("schedule ") < at("timing: "), "{text}");
    assert!(
        at("timing: one sequence of 96 tokens, about") < at("time     "),
        "{text}"
    );
    // On a CPU adapter the default times one sequence and says that it extrapolates.
    assert!(
        text.contains("extrapolated: one sequence of 96 tokens took") && text.contains("× 4"),
        "{text}"
    );
    // The JSON says the same, without progress lines on stdout.
    let out = afinador(&[
        "preflight",
        "--model",
        model,
        "--data",
        &data,
        "--batch-size",
        "2",
        "--seq-len",
        "96",
        "--train-on-prompt",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["time"]["extrapolated"], true, "{v}");
    let step_s = v["time"]["step_s"].as_f64().unwrap();
    assert!(step_s.is_finite() && step_s > 0.0);
    assert!(!stderr(&out).contains("timing:"), "--json is quiet");
}

#[test]
fn data_too_long_for_the_sequence_names_the_cause_and_fails_preflight() {
    let dir = scratch("short");
    let data = enem(&dir, 6);
    let out_dir = dir.join("run");
    // Every ENEM record's prompt is longer than 64 tokens: nothing is left to train on.
    let e = one_line_error(&afinador(&[
        "train",
        "--data",
        &data,
        "--seq-len",
        "64",
        "--batch-size",
        "1",
        "--output",
        out_dir.to_str().unwrap(),
    ]));
    assert!(e.contains("0 training sequences"), "{e}");
    assert!(
        e.contains("6 of 6 records are longer than --seq-len 64"),
        "{e}"
    );
    assert!(
        e.contains("--seq-len 1") || e.contains("--seq-len 2"),
        "{e}"
    );
    assert!(
        !e.contains("batch size") && !e.contains("--batch-size"),
        "{e}"
    );
    // preflight shows its report and then fails with the same reason.
    let out = afinador(&[
        "preflight",
        "--data",
        &data,
        "--seq-len",
        "64",
        "--batch-size",
        "1",
    ]);
    let e = one_line_error(&out);
    assert!(e.contains("longer than --seq-len 64"), "{e}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("memory plan"));
    // An empty file says so.
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let e = one_line_error(&afinador(&[
        "train",
        "--data",
        empty.to_str().unwrap(),
        "--batch-size",
        "1",
        "--output",
        out_dir.to_str().unwrap(),
    ]));
    assert!(e.contains("no records"), "{e}");
}

#[test]
fn negative_numbers_get_their_flags_own_message() {
    let data = "examples/enem/train.jsonl";
    for (args, flag) in [
        (vec!["--lr", "-1e-3"], "--lr"),
        (vec!["--lr=-0.5"], "--lr"),
        (vec!["--lora-alpha=-5"], "--lora-alpha"),
        (vec!["--lora-alpha", "-5"], "--lora-alpha"),
        (vec!["--weight-decay", "-0.1"], "--weight-decay"),
        (vec!["--epochs", "-2"], "--epochs"),
        (vec!["--max-steps", "-1"], "--max-steps"),
    ] {
        for cmd in ["train", "preflight"] {
            let mut all = vec![cmd, "--data", data];
            all.extend_from_slice(&args);
            let e = one_line_error(&afinador(&all));
            assert!(e.contains(flag), "{args:?}: {e}");
            assert!(!e.contains("unexpected argument"), "{args:?}: {e}");
        }
    }
    let help = String::from_utf8_lossy(&afinador(&["train", "--help"]).stdout).into_owned();
    let line_of = |flag: &str| {
        let i = help
            .find(flag)
            .unwrap_or_else(|| panic!("no {flag} in --help"));
        help[i..].lines().take(3).collect::<Vec<_>>().join(" ")
    };
    assert!(line_of("--max-steps <").contains("0"), "{help}");
    assert!(
        line_of("--epochs <").contains("Passes over the training data"),
        "{help}"
    );
}

#[test]
fn an_input_error_comes_before_any_configuration_dump() {
    let dir = scratch("inputs");
    let out = afinador(&[
        "train",
        "--data",
        "no/such/data.jsonl",
        "--output",
        dir.join("run").to_str().unwrap(),
    ]);
    let e = one_line_error(&out);
    assert!(
        e.contains("--data no/such/data.jsonl cannot be read"),
        "{e}"
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(
        !dir.join("run").exists(),
        "nothing written for a failed start"
    );
    let out = afinador(&[
        "train",
        "--data",
        "examples/enem/train.jsonl",
        "--eval-data",
        "no/such/eval.jsonl",
    ]);
    assert!(one_line_error(&out).contains("--eval-data no/such/eval.jsonl"));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

#[test]
fn gpu_commands_print_no_xdg_runtime_dir_noise() {
    let out = command(&["devices"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("XDG_RUNTIME_DIR"),
        "{}",
        stderr(&out)
    );
    let out = command(&["score", "--text", "Olá", "--json"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "nothing on stderr on success");
}

#[test]
fn backends_this_system_lacks_are_named_as_such() {
    if cfg!(target_os = "linux") {
        let e = one_line_error(&afinador(&["devices", "--backend", "metal"]));
        assert!(e.contains("Metal exists only on macOS"), "{e}");
        assert!(!e.contains("mesa-vulkan-drivers"), "{e}");
        let e = one_line_error(&afinador(&[
            "score",
            "--text",
            "Olá, mundo",
            "--backend",
            "dx12",
        ]));
        assert!(e.contains("DX12 exists only on Windows"), "{e}");
    }
}

#[test]
fn the_default_model_is_found_from_another_directory() {
    let elsewhere = scratch("cwd");
    let out = command(&["score", "--text", "Olá, mundo", "--json"])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_afinador"));
    if exe.starts_with(repo().canonicalize().unwrap()) || exe.starts_with(repo()) {
        // Built in this checkout: its models/ is found.
        assert!(out.status.success(), "{}", stderr(&out));
    } else {
        // Built elsewhere (CARGO_TARGET_DIR): the error says where it looked and what to do.
        let e = one_line_error(&out);
        assert!(e.contains("--model") && e.contains("fetch-model"), "{e}");
    }
}

#[test]
fn default_metrics_skip_accuracy_on_free_text_references_and_say_why() {
    let dir = scratch("eval");
    let preds = dir.join("preds.jsonl");
    std::fs::write(
        &preds,
        "{\"prediction\": \"o gato dorme\", \"reference\": \"o gato dorme no sofá\"}\n\
         {\"prediction\": \"Resposta: C\", \"reference\": \"C\"}\n",
    )
    .unwrap();
    let p = preds.to_str().unwrap();
    let out = afinador(&["eval", "--predictions", p]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("skipped accuracy") && err.contains("record 1"),
        "{err}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rougeL") && !text.contains("accuracy"),
        "{text}"
    );
    let out = afinador(&["eval", "--predictions", p, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["skipped"][0]["metric"], "accuracy", "{v}");
    assert!(
        v["f1"].as_f64().is_some() && v.get("accuracy").is_none(),
        "{v}"
    );
    // Asked for by name, accuracy stays strict.
    let e = one_line_error(&afinador(&[
        "eval",
        "--predictions",
        p,
        "--metrics",
        "accuracy",
    ]));
    assert!(e.contains("choice letter"), "{e}");
    // References that all name a letter keep accuracy in the default.
    std::fs::write(
        &preds,
        "{\"prediction\": \"Resposta: C\", \"reference\": \"C\"}\n",
    )
    .unwrap();
    let out = afinador(&["eval", "--predictions", p, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["accuracy"], 1.0, "{v}");
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    // `afinador … | head` closes stdout early: no panic message, as with other CLI tools.
    let script = "\"$0\" tokenize --text-file README.md --json | head -c 100 >/dev/null";
    let out = Command::new("sh")
        .args(["-c", script, env!("CARGO_BIN_EXE_afinador")])
        .current_dir(repo())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}
