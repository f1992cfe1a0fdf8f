#![no_main]
//! Arbitrary bytes as a Panther log and as console output: the diagnoser must never panic,
//! keep its evidence bounded, and always answer with one of the documented categories.
use libfuzzer_sys::fuzz_target;
use sysprep::diagnose::{
    Category, Diagnoser, DiagnosisContext, MAX_EVIDENCE, MAX_LINE_BYTES, for_each_line,
    parse_panther_line,
};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (log, console) = data.split_at(split);
    let mut diagnoser = Diagnoser::new();
    diagnoser
        .read_log(log)
        .expect("reading a slice cannot fail");
    diagnoser
        .read_console(console)
        .expect("reading a slice cannot fail");
    for context in [
        DiagnosisContext::default(),
        DiagnosisContext {
            timed_out: true,
            agent_online: Some(false),
        },
    ] {
        let mut copy = Diagnoser::new();
        copy.read_log(log).expect("slice");
        let diagnosis = copy.finish(&context);
        assert!(diagnosis.evidence.len() <= MAX_EVIDENCE);
        assert!(Category::ALL.contains(&diagnosis.category));
        assert_eq!(diagnosis.retriable, diagnosis.category.retriable());
    }
    let diagnosis = diagnoser.finish(&DiagnosisContext::default());
    assert!(
        diagnosis
            .evidence
            .iter()
            .all(|l| l.len() <= MAX_LINE_BYTES * 3)
    );
    for_each_line(data, |line| {
        let parsed = parse_panther_line(line);
        assert!(parsed.message.len() <= line.len());
    })
    .expect("slice");
});
