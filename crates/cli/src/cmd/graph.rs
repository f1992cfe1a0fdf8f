//! `fleetprep graph WORKFLOW --format mermaid|dot`: draws a state machine's transitions.

use std::collections::BTreeSet;
use std::process::ExitCode;

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Mermaid,
    Dot,
}

#[derive(clap::Args)]
pub struct Args {
    /// A workflow name (bake, name-on-launch, release-on-terminate, rollout) or an ASL file.
    pub workflow: String,
    #[arg(long, value_enum, default_value_t = Format::Mermaid)]
    pub format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = match workflows::raw_definition(&args.workflow) {
        Some(text) => text.to_string(),
        None => std::fs::read_to_string(&args.workflow).map_err(|e| {
            anyhow::anyhow!(
                "{:?} is neither a workflow ({}) nor a readable file: {e}",
                args.workflow,
                workflows::WORKFLOWS.join(", ")
            )
        })?,
    };
    let definition: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", args.workflow))?;
    print!("{}", render(&definition, args.format)?);
    Ok(ExitCode::SUCCESS)
}

/// One edge: from, to, label ("" for Next).
type Edge = (String, String, String);

struct Graph {
    nodes: Vec<(String, String)>,
    edges: Vec<Edge>,
    start: String,
}

fn collect(machine: &Value, prefix: &str, graph: &mut Graph) -> anyhow::Result<String> {
    let states = machine
        .get("States")
        .and_then(Value::as_object)
        .ok_or_else(|| anyhow::anyhow!("state machine {prefix:?} has no \"States\" object"))?;
    let start = machine
        .get("StartAt")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("state machine {prefix:?} has no \"StartAt\""))?;
    let id = |name: &str| format!("{prefix}{name}");
    for (name, state) in states {
        let kind = state.get("Type").and_then(Value::as_str).unwrap_or("?");
        graph.nodes.push((id(name), format!("{name} ({kind})")));
        if let Some(next) = state.get("Next").and_then(Value::as_str) {
            graph.edges.push((id(name), id(next), String::new()));
        }
        if let Some(default) = state.get("Default").and_then(Value::as_str) {
            graph.edges.push((id(name), id(default), "default".into()));
        }
        for choice in state
            .get("Choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(next) = choice.get("Next").and_then(Value::as_str) {
                graph.edges.push((id(name), id(next), "choice".into()));
            }
        }
        for catch in state
            .get("Catch")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(next) = catch.get("Next").and_then(Value::as_str) {
                let errors = catch
                    .get("ErrorEquals")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                graph
                    .edges
                    .push((id(name), id(next), format!("catch {errors}")));
            }
        }
        let inner = state.get("ItemProcessor").or_else(|| state.get("Iterator"));
        if let Some(inner) = inner {
            let inner_start = collect(inner, &format!("{prefix}{name}/"), graph)?;
            graph
                .edges
                .push((id(name), inner_start, "each item".into()));
        }
        for (i, branch) in state
            .get("Branches")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let inner_start = collect(branch, &format!("{prefix}{name}/{i}/"), graph)?;
            graph
                .edges
                .push((id(name), inner_start, format!("branch {i}")));
        }
    }
    Ok(id(start))
}

fn render(definition: &Value, format: Format) -> anyhow::Result<String> {
    let mut graph = Graph {
        nodes: Vec::new(),
        edges: Vec::new(),
        start: String::new(),
    };
    graph.start = collect(definition, "", &mut graph)?;
    // Stable short ids: mermaid and dot both dislike spaces and slashes in ids.
    let ids: Vec<String> = graph.nodes.iter().map(|(id, _)| id.clone()).collect();
    let short = |id: &str| -> String {
        let index = ids.iter().position(|x| x == id).unwrap_or(usize::MAX);
        format!("s{index}")
    };
    let mut out = String::new();
    match format {
        Format::Mermaid => {
            out.push_str("flowchart TD\n");
            out.push_str(&format!("  start((start)) --> {}\n", short(&graph.start)));
            for (id, label) in &graph.nodes {
                out.push_str(&format!(
                    "  {}[\"{}\"]\n",
                    short(id),
                    label.replace('"', "'")
                ));
            }
            let mut seen = BTreeSet::new();
            for (from, to, label) in &graph.edges {
                if !seen.insert((from.clone(), to.clone(), label.clone())) {
                    continue;
                }
                if label.is_empty() {
                    out.push_str(&format!("  {} --> {}\n", short(from), short(to)));
                } else {
                    out.push_str(&format!(
                        "  {} -->|{}| {}\n",
                        short(from),
                        label.replace('|', "/"),
                        short(to)
                    ));
                }
            }
        }
        Format::Dot => {
            out.push_str("digraph workflow {\n  rankdir=TB;\n  node [shape=box];\n");
            out.push_str(&format!(
                "  start [shape=circle];\n  start -> {};\n",
                short(&graph.start)
            ));
            for (id, label) in &graph.nodes {
                out.push_str(&format!(
                    "  {} [label=\"{}\"];\n",
                    short(id),
                    label.replace('"', "\\\"")
                ));
            }
            let mut seen = BTreeSet::new();
            for (from, to, label) in &graph.edges {
                if !seen.insert((from.clone(), to.clone(), label.clone())) {
                    continue;
                }
                out.push_str(&format!(
                    "  {} -> {} [label=\"{}\"];\n",
                    short(from),
                    short(to),
                    label.replace('"', "\\\"")
                ));
            }
            out.push_str("}\n");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workflow_renders_every_state() {
        for name in workflows::WORKFLOWS {
            let definition: Value =
                serde_json::from_str(workflows::raw_definition(name).unwrap()).unwrap();
            let mermaid = render(&definition, Format::Mermaid).unwrap();
            let dot = render(&definition, Format::Dot).unwrap();
            for state in definition["States"].as_object().unwrap().keys() {
                assert!(mermaid.contains(&format!("{state} (")), "{name}: {state}");
                assert!(dot.contains(&format!("{state} (")), "{name}: {state}");
            }
            assert!(dot.ends_with("}\n"));
        }
    }

    #[test]
    fn catch_edges_are_labelled() {
        let definition: Value = serde_json::from_str(
            r#"{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"x","Catch":[{"ErrorEquals":["States.ALL"],"Next":"B"}],"End":true},"B":{"Type":"Fail"}}}"#,
        )
        .unwrap();
        let mermaid = render(&definition, Format::Mermaid).unwrap();
        assert!(mermaid.contains("s0 -->|catch States.ALL| s1"), "{mermaid}");
    }
}
