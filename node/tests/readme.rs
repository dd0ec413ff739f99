//! The README's clerk block, run as written against a node started from the README's minimal
//! config: the slip shows the case number and deadline, the notice lists exactly the three
//! problems of the foundation issue, and the same answers come over gRPC.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]

mod common;

use std::process::Command;

use yimen_proto::pb;

const README: &str = include_str!("../../README.md");

/// The body of the fenced block whose info string is `lang title=<title>`.
fn block(title: &str) -> String {
    let mut lines = README.lines();
    let opening = format!("title={title}");
    while let Some(line) = lines.next() {
        if line.starts_with("```") && line.contains(&opening) {
            return lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect::<Vec<_>>()
                .join("\n");
        }
    }
    panic!("README.md has no block titled {title}");
}

/// Splits a command line into words: spaces separate, single or double quotes group.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

struct Ran {
    args: Vec<String>,
    stdout: String,
}

/// Runs every `yimen-node` line of the clerk block with the real binary; `export` lines set
/// the environment; `alias` lines are how a person gets the binary, not needed here.
fn run_block(node: &str) -> Vec<Ran> {
    let mut env: Vec<(String, String)> = vec![("YIMEN_NODE".to_owned(), node.to_owned())];
    let mut ran = Vec::new();
    for line in block("clerk").lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with("alias ") {
            continue;
        }
        if let Some(assign) = line.strip_prefix("export ") {
            let (k, v) = assign.split_once('=').unwrap();
            env.push((k.to_owned(), v.trim_matches(['"', '\'']).to_owned()));
            continue;
        }
        let mut w = words(line);
        assert_eq!(
            w.remove(0),
            "yimen-node",
            "unexpected line in the clerk block: {line}"
        );
        let out = Command::new(env!("CARGO_BIN_EXE_yimen-node"))
            .args(&w)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{line}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran.push(Ran {
            args: w,
            stdout: String::from_utf8(out.stdout).unwrap(),
        });
    }
    ran
}

fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} in:\n{text}"))
        .trim()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_clerk_block_works_as_written() {
    let dir = common::NodeDir::new();
    // The README's minimal config, on a free port instead of 7070 (tests run in parallel).
    let config = block("node.toml");
    assert!(
        !config.contains("clerk_listen"),
        "the minimal config stays minimal"
    );
    std::fs::write(
        dir.config(),
        format!("{config}\nclerk_listen = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let node = dir.serve().await;
    let url = node.url();

    let ran = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run_block(&url)
    })
    .await
    .unwrap();
    let applies: Vec<&Ran> = ran.iter().filter(|r| r.args[0] == "apply").collect();
    assert_eq!(applies.len(), 2);

    // 老年优待证: the slip, with the case number and the deadline.
    let slip = &applies[0].stdout;
    assert!(slip.contains("受理单"), "{slip}");
    let number = field(slip, "办件编号：").to_owned();
    assert!(
        number.starts_with("430421105204") && number.len() == 24,
        "{number}"
    );
    let deadline = field(slip, "办结期限：").to_owned();
    assert_eq!(deadline.len(), 10, "{deadline}");

    // 医疗救助: the notice lists exactly the three problems.
    let notice = &applies[1].stdout;
    assert!(notice.contains("一次性告知书"), "{notice}");
    let problems: Vec<&str> = notice
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .collect();
    assert_eq!(problems.len(), 3, "{notice}");
    assert!(problems[0].contains("新农合") && problems[0].contains("城镇医疗保险"));
    assert!(problems[1].contains("低保证") && problems[1].contains("五保证"));
    assert!(problems[2].contains("不符合申报条件：低保或五保人员"));

    // The same answers over gRPC.
    let mut client = node.client().await;
    let case = client
        .get_case(pb::GetCaseRequest {
            case_number: number.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(case.status, "processing");
    let d = case.deadline.unwrap();
    assert_eq!(
        format!("{:04}-{:02}-{:02}", d.year, d.month, d.day),
        deadline
    );
    let args = &applies[1].args;
    let arg = |name: &str| args[args.iter().position(|a| a == name).unwrap() + 1].clone();
    let reply = client
        .apply(pb::ApplyRequest {
            operator: "王芳".to_owned(),
            item_code: arg("--item"),
            applicant: Some(pb::ApplicantInput {
                id_number: arg("--id-number"),
                name: arg("--name"),
                household: arg("--household"),
                statuses: Vec::new(),
            }),
            materials: vec![arg("--material")],
            helper: None,
        })
        .await
        .unwrap()
        .into_inner();
    let Some(pb::apply_reply::Outcome::Incomplete(grpc_notice)) = reply.outcome else {
        panic!("expected the notice over gRPC too");
    };
    assert_eq!(grpc_notice.lines_zh.len(), 3);
    assert_eq!(
        &grpc_notice.text_zh, notice,
        "CLI and gRPC give the same notice"
    );

    // The list shows the accepted case, and only it (the notice numbered nothing).
    let list = ran.iter().find(|r| r.args[0] == "list").unwrap();
    assert_eq!(list.stdout.lines().count(), 1, "{}", list.stdout);
    assert!(list.stdout.contains(&number));
    // The register of the day has the acceptance.
    let register = ran.iter().find(|r| r.args[0] == "register").unwrap();
    assert!(register.stdout.contains(&number) && register.stdout.contains("受理"));
    // The calendar line of the block prints the date alone.
    let cal = ran.iter().find(|r| r.args[0] == "calendar").unwrap();
    assert_eq!(cal.stdout, "2026-10-15\n");
}

#[test]
fn calendar_add_prints_the_date_or_names_the_missing_year() {
    let run = |from: &str| {
        Command::new(env!("CARGO_BIN_EXE_yimen-node"))
            .args(["calendar", "add", "--from", from, "--working-days", "10"])
            .output()
            .unwrap()
    };
    let ok = run("2026-09-24");
    assert!(ok.status.success());
    assert_eq!(String::from_utf8(ok.stdout).unwrap(), "2026-10-15\n");
    assert!(String::from_utf8_lossy(&ok.stderr).contains("built-in calendar"));

    let past = run("2026-12-25");
    assert!(!past.status.success());
    assert!(past.stdout.is_empty());
    let err = String::from_utf8_lossy(&past.stderr);
    assert!(err.contains("2027"), "{err}");
}

#[test]
fn words_split_like_a_shell() {
    assert_eq!(words("a --b 'c d' \"e\" ''"), ["a", "--b", "c d", "e", ""]);
}
