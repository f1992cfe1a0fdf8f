//! Integer and date/time pictures: `$formatInteger`, `$parseInteger`, `$fromMillis`,
//! `$toMillis` and `$now` with a picture, following XPath `fn:format-integer` and
//! `fn:format-dateTime` (XPath and XQuery Functions 3.1, sections 4.6.1 and 9.8) as JSONata
//! implements them: decimal digit patterns with grouping separators, `a`/`A` letter
//! sequences, `i`/`I` roman numerals, `w`/`W`/`Ww` English words, ordinals (`;o` in
//! integer pictures, `[D1o]` in date pictures), names (`[MNn]`, `[FNn]`, `[PN]`), width
//! modifiers (`[FN,*-3]`, `[Y,2]`) and time zones (`[Z]`, `[z]`, `[Z01:01t]`). All dates are
//! proleptic Gregorian in UTC (plus the optional offset), computed with integer arithmetic.

use crate::error::{JsonataError, err};

type R<T> = Result<T, JsonataError>;

/// Longest picture accepted: pictures are short in practice, and the bound keeps the
/// work of padding and grouping small for hostile input.
pub(crate) const MAX_PICTURE: usize = 4096;

pub(crate) fn check_picture(picture: &str) -> R<()> {
    if picture.len() > MAX_PICTURE {
        return Err(err!(
            D3080,
            "The picture string is longer than {MAX_PICTURE} characters"
        ));
    }
    Ok(())
}

const FEW: [&str; 20] = [
    "Zero",
    "One",
    "Two",
    "Three",
    "Four",
    "Five",
    "Six",
    "Seven",
    "Eight",
    "Nine",
    "Ten",
    "Eleven",
    "Twelve",
    "Thirteen",
    "Fourteen",
    "Fifteen",
    "Sixteen",
    "Seventeen",
    "Eighteen",
    "Nineteen",
];
const ORDINALS: [&str; 20] = [
    "Zeroth",
    "First",
    "Second",
    "Third",
    "Fourth",
    "Fifth",
    "Sixth",
    "Seventh",
    "Eighth",
    "Ninth",
    "Tenth",
    "Eleventh",
    "Twelfth",
    "Thirteenth",
    "Fourteenth",
    "Fifteenth",
    "Sixteenth",
    "Seventeenth",
    "Eighteenth",
    "Nineteenth",
];
const DECADES: [&str; 9] = [
    "Twenty", "Thirty", "Forty", "Fifty", "Sixty", "Seventy", "Eighty", "Ninety", "Hundred",
];
const MAGNITUDES: [&str; 4] = ["Thousand", "Million", "Billion", "Trillion"];
const DAYS: [&str; 8] = [
    "",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
/// Zero digits of the Unicode decimal digit families a digit pattern may use.
const DECIMAL_GROUPS: [u32; 37] = [
    0x30, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
    0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80,
    0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0,
    0xFF10,
];
const DAY_MS: i64 = 86_400_000;

// ------------------------------------------------------------------ integers

fn words(num: u64, ordinal: bool) -> String {
    fn look(num: u64, prev: bool, ord: bool) -> String {
        if num <= 19 {
            let w = if ord {
                ORDINALS[num as usize]
            } else {
                FEW[num as usize]
            };
            format!("{}{w}", if prev { " and " } else { "" })
        } else if num < 100 {
            let (tens, rem) = (num / 10, num % 10);
            let mut w = format!(
                "{}{}",
                if prev { " and " } else { "" },
                DECADES[tens as usize - 2]
            );
            if rem > 0 {
                w.push('-');
                w.push_str(&look(rem, false, ord));
            } else if ord {
                w.pop();
                w.push_str("ieth");
            }
            w
        } else if num < 1000 {
            let (h, rem) = (num / 100, num % 100);
            let mut w = format!(
                "{}{} Hundred",
                if prev { ", " } else { "" },
                FEW[h as usize]
            );
            if rem > 0 {
                w.push_str(&look(rem, true, ord));
            } else if ord {
                w.push_str("th");
            }
            w
        } else {
            let digits = num.to_string().len() as u32;
            let mag = ((digits - 1) / 3).min(MAGNITUDES.len() as u32);
            let factor = 10u64.pow(mag * 3);
            let (mant, rem) = (num / factor, num % factor);
            let mut w = format!(
                "{}{} {}",
                if prev { ", " } else { "" },
                look(mant, false, false),
                MAGNITUDES[mag as usize - 1]
            );
            if rem > 0 {
                w.push_str(&look(rem, true, ord));
            } else if ord {
                w.push_str("th");
            }
            w
        }
    }
    look(num, false, ordinal)
}

fn word_value(word: &str) -> Option<u64> {
    let lower = |s: &str| s.to_lowercase();
    for (i, w) in FEW.iter().enumerate() {
        if lower(w) == word {
            return Some(i as u64);
        }
    }
    for (i, w) in ORDINALS.iter().enumerate() {
        if lower(w) == word {
            return Some(i as u64);
        }
    }
    for (i, w) in DECADES.iter().enumerate() {
        let lw = lower(w);
        let ieth = format!("{}ieth", &lw[..lw.len() - 1]);
        if lw == word || ieth == word {
            return Some((i as u64 + 2) * 10);
        }
    }
    if word == "hundredth" {
        return Some(100);
    }
    for (i, w) in MAGNITUDES.iter().enumerate() {
        let lw = lower(w);
        if lw == word || format!("{lw}th") == word {
            return Some(10u64.pow((i as u32 + 1) * 3));
        }
    }
    None
}

/// Every word the words pattern accepts (for the parsing regular expression).
fn all_words() -> Vec<String> {
    let mut out: Vec<String> = FEW.iter().map(|w| w.to_lowercase()).collect();
    out.extend(ORDINALS.iter().map(|w| w.to_lowercase()));
    for w in DECADES {
        let lw = w.to_lowercase();
        out.push(format!("{}ieth", &lw[..lw.len() - 1]));
        out.push(lw);
    }
    out.push("hundredth".into());
    for w in MAGNITUDES {
        let lw = w.to_lowercase();
        out.push(format!("{lw}th"));
        out.push(lw);
    }
    out
}

fn words_to_number(text: &str) -> Option<f64> {
    let re = regex::Regex::new(r",\s|\sand\s|[\s\\-]").ok()?;
    let mut segs: Vec<f64> = vec![0.0];
    for part in re.split(text) {
        // An unknown word makes the whole value NaN in the reference implementation.
        let value = word_value(part).map_or(f64::NAN, |v| v as f64);
        if value < 100.0 || value.is_nan() {
            let mut top = segs.pop().unwrap_or(0.0);
            if top >= 1000.0 {
                segs.push(top);
                top = 0.0;
            }
            segs.push(top + value);
        } else {
            let top = segs.pop().unwrap_or(0.0);
            segs.push(top * value);
        }
    }
    let r: f64 = segs.iter().sum();
    if r.is_nan() { None } else { Some(r) }
}

fn roman(mut value: u64) -> String {
    const NUMERALS: [(u64, &str); 13] = [
        (1000, "m"),
        (900, "cm"),
        (500, "d"),
        (400, "cd"),
        (100, "c"),
        (90, "xc"),
        (50, "l"),
        (40, "xl"),
        (10, "x"),
        (9, "ix"),
        (5, "v"),
        (4, "iv"),
        (1, "i"),
    ];
    let mut out = String::new();
    // Bounded: values are capped by the caller.
    'outer: while value > 0 {
        for (v, s) in NUMERALS {
            if value >= v {
                out.push_str(s);
                value -= v;
                continue 'outer;
            }
        }
    }
    out
}

fn roman_to_decimal(text: &str) -> f64 {
    let mut decimal = 0.0;
    let mut max = 1.0;
    for c in text.chars().rev() {
        let v = match c.to_ascii_uppercase() {
            'M' => 1000.0,
            'D' => 500.0,
            'C' => 100.0,
            'L' => 50.0,
            'X' => 10.0,
            'V' => 5.0,
            'I' => 1.0,
            _ => return f64::NAN,
        };
        if v < max {
            decimal -= v;
        } else {
            max = v;
            decimal += v;
        }
    }
    decimal
}

fn letters(mut value: u64, a: char) -> String {
    let mut out = Vec::new();
    while value > 0 {
        out.push(char::from_u32((value - 1) as u32 % 26 + a as u32).unwrap_or('?'));
        value = (value - 1) / 26;
    }
    out.iter().rev().collect()
}

fn letters_to_decimal(text: &str, a: char) -> f64 {
    let mut d = 0.0;
    for (i, c) in text.chars().rev().enumerate() {
        d += (c as i64 - a as i64 + 1) as f64 * 26f64.powi(i as i32);
    }
    d
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Upper,
    Lower,
    Title,
}

#[derive(Clone, PartialEq, Eq)]
enum Primary {
    Decimal,
    Letters,
    Roman,
    Words,
    Sequence(String),
}

#[derive(Clone)]
pub(crate) struct IntFormat {
    primary: Primary,
    case: Case,
    ordinal: bool,
    zero: u32,
    mandatory: usize,
    optional: usize,
    /// Regular grouping: (interval, separator).
    regular: Option<(usize, char)>,
    /// Irregular grouping: (position from the right, separator).
    separators: Vec<(usize, char)>,
    /// Exact width when parsing a date component (`-1`: any).
    n: i64,
}

pub(crate) fn analyse_integer(picture: &str) -> R<IntFormat> {
    let mut f = IntFormat {
        primary: Primary::Decimal,
        case: Case::Lower,
        ordinal: false,
        zero: 0x30,
        mandatory: 0,
        optional: 0,
        regular: None,
        separators: Vec::new(),
        n: -1,
    };
    let primary = match picture.rfind(';') {
        None => picture,
        Some(i) => {
            f.ordinal = picture[i + 1..].starts_with('o');
            &picture[..i]
        }
    };
    match primary {
        "A" | "a" => {
            f.primary = Primary::Letters;
            if primary == "A" {
                f.case = Case::Upper;
            }
        }
        "I" | "i" => {
            f.primary = Primary::Roman;
            if primary == "I" {
                f.case = Case::Upper;
            }
        }
        "W" => {
            f.primary = Primary::Words;
            f.case = Case::Upper;
        }
        "Ww" => {
            f.primary = Primary::Words;
            f.case = Case::Title;
        }
        "w" => f.primary = Primary::Words,
        _ => {
            let mut zero: Option<u32> = None;
            let mut position = 0;
            let mut seps = Vec::new();
            for c in primary.chars().rev() {
                let cp = c as u32;
                if let Some(g) = DECIMAL_GROUPS.iter().find(|g| cp >= **g && cp <= **g + 9) {
                    f.mandatory += 1;
                    position += 1;
                    match zero {
                        None => zero = Some(*g),
                        Some(z) if z != *g => {
                            return Err(err!(
                                D3131,
                                "The picture string '{picture}' mixes digits from different digit families"
                            ));
                        }
                        _ => {}
                    }
                } else if c == '#' {
                    position += 1;
                    f.optional += 1;
                } else {
                    seps.push((position, c));
                }
            }
            if f.mandatory == 0 {
                f.primary = Primary::Sequence(primary.to_owned());
            } else {
                f.zero = zero.unwrap_or(0x30);
                f.regular = regular_grouping(&seps);
                if f.regular.is_none() {
                    f.separators = seps;
                }
            }
        }
    }
    Ok(f)
}

fn regular_grouping(seps: &[(usize, char)]) -> Option<(usize, char)> {
    let (_, c0) = *seps.first()?;
    if seps.iter().any(|(_, c)| *c != c0) {
        return None;
    }
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let factor = seps.iter().map(|(p, _)| *p).reduce(gcd)?;
    for k in 1..=seps.len() {
        if !seps.iter().any(|(p, _)| *p == k * factor) {
            return None;
        }
    }
    if factor == 0 {
        None
    } else {
        Some((factor, c0))
    }
}

fn apply_case(s: String, case: Case) -> String {
    match case {
        Case::Upper => s.to_uppercase(),
        Case::Lower => s.to_lowercase(),
        Case::Title => s,
    }
}

/// The largest magnitude formatted in words/letters/roman (larger values would only make
/// huge strings; the reference implementation has no meaningful output beyond it either).
const MAX_SPELLED: f64 = 1e18;

pub(crate) fn format_integer_with(value: f64, f: &IntFormat) -> R<String> {
    let negative = value < 0.0;
    let abs = value.abs();
    let spelled_ok = abs < MAX_SPELLED;
    let body = match &f.primary {
        Primary::Letters if spelled_ok => {
            letters(abs as u64, if f.case == Case::Upper { 'A' } else { 'a' })
        }
        Primary::Roman if spelled_ok && abs < 1e7 => {
            let r = roman(abs as u64);
            if f.case == Case::Upper {
                r.to_uppercase()
            } else {
                r
            }
        }
        Primary::Words if spelled_ok => apply_case(words(abs as u64, f.ordinal), f.case),
        Primary::Letters | Primary::Roman | Primary::Words => {
            return Err(err!(D3001, "The number is too large to spell out"));
        }
        Primary::Decimal => {
            let mut digits = if abs < 1e21 {
                format!("{}", abs as u128)
            } else {
                format!("{abs:e}")
            };
            let pad = f.mandatory.saturating_sub(digits.len());
            digits.insert_str(0, &"0".repeat(pad));
            if f.zero != 0x30 {
                digits = digits
                    .chars()
                    .map(|c| {
                        c.to_digit(10)
                            .and_then(|d| char::from_u32(f.zero + d))
                            .unwrap_or(c)
                    })
                    .collect();
            }
            let mut chars: Vec<char> = digits.chars().collect();
            if let Some((every, sep)) = f.regular {
                let n = (chars.len().saturating_sub(1)) / every;
                for k in (1..=n).rev() {
                    let pos = chars.len() - k * every;
                    chars.insert(pos, sep);
                }
            } else {
                for (position, sep) in f.separators.iter().rev() {
                    let pos = chars.len().saturating_sub(*position);
                    chars.insert(pos, *sep);
                }
            }
            let mut s: String = chars.into_iter().collect();
            if f.ordinal {
                let last = s.chars().last();
                let before = s.chars().rev().nth(1);
                let suffix = match last {
                    _ if before == Some('1') => "th",
                    Some('1') => "st",
                    Some('2') => "nd",
                    Some('3') => "rd",
                    _ => "th",
                };
                s.push_str(suffix);
            }
            s
        }
        Primary::Sequence(token) => {
            return Err(err!(
                D3130,
                "Formatting or parsing an integer as a sequence starting with \"{token}\" is not supported by this implementation"
            ));
        }
    };
    Ok(if negative { format!("-{body}") } else { body })
}

/// `$formatInteger(number, picture)`.
pub(crate) fn format_integer(value: f64, picture: &str) -> R<String> {
    check_picture(picture)?;
    let f = analyse_integer(picture)?;
    format_integer_with(value.floor(), &f)
}

struct Matcher {
    regex: String,
    parse: Parse,
    component: char,
}

enum Parse {
    None,
    Int(IntFormat),
    Names(Vec<(String, i64)>),
    Zone { separator: Option<char>, gmt: bool },
}

fn int_regex(f: &IntFormat) -> R<String> {
    let occurrences = if f.n > 0 {
        if f.optional == 0 {
            format!("{{{}}}", f.n)
        } else {
            format!("{{{},{}}}", (f.n - f.optional as i64).max(0), f.n)
        }
    } else {
        "+".to_owned()
    };
    Ok(match &f.primary {
        Primary::Letters => if f.case == Case::Upper {
            "[A-Z]+"
        } else {
            "[a-z]+"
        }
        .to_owned(),
        Primary::Roman => if f.case == Case::Upper {
            "[MDCLXVI]+"
        } else {
            "[mdclxvi]+"
        }
        .to_owned(),
        Primary::Words => {
            let mut alts = all_words();
            alts.push("and".into());
            alts.push("[\\-, ]".into());
            format!("(?:{})+", alts.join("|"))
        }
        Primary::Decimal => {
            let mut r = format!("[0-9]{occurrences}");
            if f.ordinal {
                r.push_str("(?:th|st|nd|rd)");
            }
            r
        }
        Primary::Sequence(token) => {
            return Err(err!(
                D3130,
                "Formatting or parsing an integer as a sequence starting with \"{token}\" is not supported by this implementation"
            ));
        }
    })
}

fn parse_int_text(text: &str, f: &IntFormat) -> Option<f64> {
    match &f.primary {
        Primary::Letters => Some(letters_to_decimal(
            text,
            if f.case == Case::Upper { 'A' } else { 'a' },
        )),
        Primary::Roman => Some(roman_to_decimal(text)),
        Primary::Words => words_to_number(&text.to_lowercase()),
        Primary::Decimal => {
            let mut digits = text.to_owned();
            if f.ordinal {
                let n = digits.chars().count().saturating_sub(2);
                digits = digits.chars().take(n).collect();
            }
            match f.regular {
                Some(_) => digits.retain(|c| c != ','),
                None => {
                    for (_, sep) in &f.separators {
                        digits.retain(|c| c != *sep);
                    }
                }
            }
            if f.zero != 0x30 {
                digits = digits
                    .chars()
                    .map(|c| char::from_u32((c as u32).wrapping_sub(f.zero) + 0x30).unwrap_or(c))
                    .collect();
            }
            // JavaScript parseInt: leading digits, NaN when there are none.
            let lead: String = digits
                .trim_start()
                .chars()
                .enumerate()
                .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+')))
                .map(|(_, c)| c)
                .collect();
            lead.parse::<f64>().ok()
        }
        Primary::Sequence(_) => None,
    }
}

/// `$parseInteger(string, picture)`.
pub(crate) fn parse_integer(text: &str, picture: &str) -> R<Option<f64>> {
    check_picture(picture)?;
    let f = analyse_integer(picture)?;
    int_regex(&f)?;
    Ok(parse_int_text(text, &f))
}

// ------------------------------------------------------------------ calendar

/// `Date.UTC(y, month0, d, h, mi, s, ms)` with JavaScript's overflow rules.
fn utc(y: i64, month0: i64, d: i64, h: i64, mi: i64, s: i64, ms: i64) -> i64 {
    let y = if (0..=99).contains(&y) { 1900 + y } else { y };
    let total = y * 12 + month0;
    let (yy, mm) = (total.div_euclid(12), total.rem_euclid(12));
    // `mm` is 0..=11 (`rem_euclid`).
    let days = clock::days_from_civil(yy, mm as u32 + 1, 1) + d - 1;
    days * DAY_MS + h * 3_600_000 + mi * 60_000 + s * 1000 + ms
}

struct Parts {
    year: i64,
    month0: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    milli: i64,
    /// 0 = Sunday, as JavaScript's getUTCDay.
    weekday: i64,
    millis: i64,
}

fn parts(millis: i64) -> Parts {
    let days = millis.div_euclid(DAY_MS);
    let rem = millis.rem_euclid(DAY_MS);
    let (y, m, d) = clock::civil_from_days(days);
    let (m, d) = (i64::from(m), i64::from(d));
    Parts {
        year: y,
        month0: m - 1,
        day: d,
        hour: rem / 3_600_000,
        minute: rem / 60_000 % 60,
        second: rem / 1000 % 60,
        milli: rem % 1000,
        weekday: (days + 4).rem_euclid(7),
        millis,
    }
}

fn start_of_first_week(year: i64, month0: i64) -> i64 {
    let jan1 = utc(year, month0, 1, 0, 0, 0, 0);
    let mut dow = parts(jan1).weekday;
    if dow == 0 {
        dow = 7;
    }
    if dow > 4 {
        jan1 + (8 - dow) * DAY_MS
    } else {
        jan1 - (dow - 1) * DAY_MS
    }
}

fn next_month(y: i64, m: i64) -> (i64, i64) {
    if m == 11 { (y + 1, 0) } else { (y, m + 1) }
}
fn prev_month(y: i64, m: i64) -> (i64, i64) {
    if m == 0 { (y - 1, 11) } else { (y, m - 1) }
}

fn delta_weeks(start: i64, end: i64) -> f64 {
    (end - start) as f64 / (DAY_MS * 7) as f64 + 1.0
}

/// A numeric component of a date (`None` for names-only components).
fn component(p: &Parts, c: char) -> Option<i64> {
    Some(match c {
        'Y' => p.year,
        'M' => p.month0 + 1,
        'D' => p.day,
        'd' => {
            let today = utc(p.year, p.month0, p.day, 0, 0, 0, 0);
            (today - utc(p.year, 0, 1, 0, 0, 0, 0)) / DAY_MS + 1
        }
        'F' => {
            if p.weekday == 0 {
                7
            } else {
                p.weekday
            }
        }
        'W' => {
            let start = start_of_first_week(p.year, 0);
            let today = utc(p.year, p.month0, p.day, 0, 0, 0, 0);
            let mut week = delta_weeks(start, today);
            if week > 52.0 {
                if today >= start_of_first_week(p.year + 1, 0) {
                    week = 1.0;
                }
            } else if week < 1.0 {
                week = delta_weeks(start_of_first_week(p.year - 1, 0), today);
            }
            week.floor() as i64
        }
        'w' => {
            let start = start_of_first_week(p.year, p.month0);
            let today = utc(p.year, p.month0, p.day, 0, 0, 0, 0);
            let mut week = delta_weeks(start, today);
            if week > 4.0 {
                let (ny, nm) = next_month(p.year, p.month0);
                if today >= start_of_first_week(ny, nm) {
                    week = 1.0;
                }
            } else if week < 1.0 {
                let (py, pm) = prev_month(p.year, p.month0);
                week = delta_weeks(start_of_first_week(py, pm), today);
            }
            week.floor() as i64
        }
        'X' => {
            if p.millis < start_of_first_week(p.year, 0) {
                p.year - 1
            } else if p.millis >= start_of_first_week(p.year + 1, 0) {
                p.year + 1
            } else {
                p.year
            }
        }
        'x' => {
            let (ny, nm) = next_month(p.year, p.month0);
            if p.millis < start_of_first_week(p.year, p.month0) {
                prev_month(p.year, p.month0).1 + 1
            } else if p.millis >= start_of_first_week(ny, nm) {
                nm + 1
            } else {
                p.month0 + 1
            }
        }
        'H' => p.hour,
        'h' => {
            let h = p.hour % 12;
            if h == 0 { 12 } else { h }
        }
        'm' => p.minute,
        's' => p.second,
        'f' => p.milli,
        'P' => i64::from(p.hour >= 12),
        _ => return None,
    })
}

// ------------------------------------------------------------------ date pictures

enum Part {
    Literal(String),
    Marker(Marker),
}

struct Marker {
    component: char,
    width_max: Option<usize>,
    presentation2: Option<char>,
    names: Option<Case>,
    int: Option<IntFormat>,
    n: i64,
}

fn analyse_datetime(picture: &str) -> R<Vec<Part>> {
    let mut spec = Vec::new();
    let chars: Vec<char> = picture.chars().collect();
    let literal = |spec: &mut Vec<Part>, s: &[char]| {
        if !s.is_empty() {
            let text: String = s.iter().collect();
            spec.push(Part::Literal(text.replace("]]", "]")));
        }
    };
    let (mut start, mut pos) = (0, 0);
    while pos < chars.len() {
        if chars[pos] == '[' {
            if chars.get(pos + 1) == Some(&'[') {
                literal(&mut spec, &chars[start..pos]);
                spec.push(Part::Literal("[".into()));
                pos += 2;
                start = pos;
                continue;
            }
            literal(&mut spec, &chars[start..pos]);
            start = pos;
            let Some(close) = chars[start..].iter().position(|c| *c == ']') else {
                return Err(err!(
                    D3135,
                    "No matching closing bracket ']' in date/time picture string"
                ));
            };
            pos = start + close;
            let marker: String = chars[start + 1..pos]
                .iter()
                .filter(|c| !c.is_whitespace())
                .collect();
            spec.push(Part::Marker(analyse_marker(&marker)?));
            start = pos + 1;
        }
        pos += 1;
    }
    literal(&mut spec, &chars[start.min(chars.len())..]);
    Ok(spec)
}

fn analyse_marker(marker: &str) -> R<Marker> {
    let component = marker.chars().next().unwrap_or(' ');
    let rest = &marker[component.len_utf8().min(marker.len())..];
    let (pres, width) = match marker.rfind(',') {
        Some(i) if i >= component.len_utf8() => {
            (&marker[component.len_utf8()..i], Some(&marker[i + 1..]))
        }
        _ => (rest, None),
    };
    let parse_width = |w: &str| -> Option<usize> {
        if w == "*" {
            return None;
        }
        let digits: String = w.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let (width_min, width_max) = match width {
        None => (None, None),
        Some(w) => match w.find('-') {
            None => (parse_width(w), None),
            Some(d) => (parse_width(&w[..d]), parse_width(&w[d + 1..])),
        },
    };
    let mut presentation2 = None;
    let presentation1: String = if pres.chars().count() == 1 {
        pres.to_owned()
    } else if pres.chars().count() > 1 {
        let last = pres.chars().last().unwrap_or(' ');
        if "atco".contains(last) {
            presentation2 = Some(last);
            pres[..pres.len() - 1].to_owned()
        } else {
            pres.to_owned()
        }
    } else {
        match component {
            'Y' | 'M' | 'D' | 'd' | 'W' | 'w' | 'X' | 'x' | 'H' | 'h' | 'f' => "1".into(),
            'F' | 'P' | 'C' | 'E' => "n".into(),
            'm' | 's' => "01".into(),
            'Z' | 'z' => "01:01".into(),
            other => {
                return Err(err!(
                    D3132,
                    "Unknown component specifier \"{other}\" in date/time picture string"
                ));
            }
        }
    };
    let mut m = Marker {
        component,
        width_max,
        presentation2,
        names: None,
        int: None,
        n: -1,
    };
    if presentation1.starts_with('n') {
        m.names = Some(Case::Lower);
    } else if let Some(rest) = presentation1.strip_prefix('N') {
        m.names = Some(if rest.starts_with('n') {
            Case::Title
        } else {
            Case::Upper
        });
    } else if "YMDdFWwXxHhmsf".contains(component) {
        let mut pattern = presentation1.clone();
        if let Some(p2) = presentation2 {
            pattern.push(';');
            pattern.push(p2);
        }
        let mut f = analyse_integer(&pattern)?;
        if let Some(min) = width_min
            && f.mandatory < min
        {
            f.mandatory = min.min(64);
        }
        if "YMD".contains(component) {
            if let Some(max) = width_max {
                m.n = max as i64;
                f.mandatory = max.min(64);
            } else {
                let w = f.mandatory + f.optional;
                if w >= 2 {
                    m.n = w as i64;
                }
            }
        }
        m.int = Some(f);
    }
    if component == 'Z' || component == 'z' {
        m.int = Some(analyse_integer(&presentation1)?);
    }
    Ok(m)
}

/// The picture `$fromMillis` uses without one (ISO 8601 with milliseconds and `Z`).
const ISO_PICTURE: &str = "[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01].[f001][Z01:01t]";

/// `$fromMillis(millis, picture?, timezone?)`; the timezone is `±HHMM`.
pub(crate) fn format_datetime(millis: f64, picture: Option<&str>, tz: Option<&str>) -> R<String> {
    let (mut oh, mut om) = (0i64, 0i64);
    if let Some(tz) = tz {
        // JavaScript parseInt, then hours and minutes with JavaScript's truncating `%`.
        let t = tz.trim_start();
        let (sign, digits) = match t.chars().next() {
            Some('-') => (-1, &t[1..]),
            Some('+') => (1, &t[1..]),
            _ => (1, t),
        };
        let d: String = digits.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(v) = d.parse::<i64>() {
            let offset = sign * v;
            oh = offset.div_euclid(100);
            om = offset % 100;
        }
    }
    check_picture(picture.unwrap_or(""))?;
    let spec = analyse_datetime(picture.unwrap_or(ISO_PICTURE))?;
    if !millis.is_finite() || millis.abs() > 8.64e15 {
        return Err(err!(D3001, "The timestamp is out of range"));
    }
    let offset_ms = (60 * oh + om) * 60_000;
    let p = parts(millis as i64 + offset_ms);
    let mut out = String::new();
    for part in &spec {
        match part {
            Part::Literal(s) => out.push_str(s),
            Part::Marker(m) => out.push_str(&format_component(&p, m, oh, om)?),
        }
    }
    Ok(out)
}

fn format_component(p: &Parts, m: &Marker, oh: i64, om: i64) -> R<String> {
    let c = m.component;
    if "YMDdFWwXxHhms".contains(c) {
        let mut v = component(p, c).unwrap_or(0);
        if c == 'Y' && m.n != -1 {
            v %= 10i64.pow(m.n.clamp(0, 18) as u32);
        }
        if let Some(case) = m.names {
            let name = match c {
                'M' | 'x' => MONTHS.get((v - 1) as usize).copied().unwrap_or(""),
                'F' => DAYS.get(v as usize).copied().unwrap_or(""),
                other => {
                    return Err(err!(
                        D3133,
                        "The 'name' modifier can only be applied to months and days in the date/time picture string, not {other}"
                    ));
                }
            };
            let mut name = apply_case(name.to_owned(), case);
            if let Some(max) = m.width_max
                && name.chars().count() > max
            {
                name = name.chars().take(max).collect();
            }
            return Ok(name);
        }
        return match &m.int {
            Some(f) => format_integer_with(v as f64, f),
            None => Ok(v.to_string()),
        };
    }
    Ok(match c {
        'f' => match &m.int {
            Some(f) => format_integer_with(p.milli as f64, f)?,
            None => p.milli.to_string(),
        },
        'Z' | 'z' => {
            let offset = oh * 100 + om;
            let Some(f) = &m.int else {
                return Ok(String::new());
            };
            let mut s = if f.regular.is_some() {
                format_integer_with(offset as f64, f)?
            } else {
                match f.mandatory {
                    1 | 2 => {
                        let mut s = format_integer_with(oh as f64, f)?;
                        if om != 0 {
                            s.push(':');
                            s.push_str(&format!("{:02}", om.abs()));
                        }
                        s
                    }
                    3 | 4 => format_integer_with(offset as f64, f)?,
                    n => {
                        return Err(err!(
                            D3134,
                            "The timezone integer format specifier cannot have more than four digits ({n})"
                        ));
                    }
                }
            };
            if offset >= 0 {
                s.insert(0, '+');
            }
            if c == 'z' {
                s.insert_str(0, "GMT");
            }
            if offset == 0 && m.presentation2 == Some('t') {
                s = "Z".into();
            }
            s
        }
        'P' => {
            let s = if p.hour >= 12 { "pm" } else { "am" };
            if m.names == Some(Case::Upper) {
                s.to_uppercase()
            } else {
                s.to_owned()
            }
        }
        'C' | 'E' => "ISO".into(),
        _ => String::new(),
    })
}

/// `$toMillis(timestamp, picture)`; `now_ms` supplies components the picture leaves out
/// before the first one it has (e.g. the year for `[H]:[m]`). `None` = no match.
pub(crate) fn parse_datetime(text: &str, picture: &str, now_ms: i64) -> R<Option<f64>> {
    check_picture(picture)?;
    let spec = analyse_datetime(picture)?;
    let mut matchers = Vec::new();
    for part in spec {
        matchers.push(match part {
            Part::Literal(s) => Matcher {
                regex: regex::escape(&s),
                parse: Parse::None,
                component: ' ',
            },
            Part::Marker(m) if m.component == 'Z' || m.component == 'z' => {
                let separator = m.int.as_ref().and_then(|f| f.regular.map(|(_, c)| c));
                let mut r = String::new();
                if m.component == 'z' {
                    r.push_str("GMT");
                }
                r.push_str("[-+][0-9]+");
                if let Some(sep) = separator {
                    r.push_str(&regex::escape(&sep.to_string()));
                    r.push_str("[0-9]+");
                }
                Matcher {
                    regex: r,
                    parse: Parse::Zone {
                        separator,
                        gmt: m.component == 'z',
                    },
                    component: m.component,
                }
            }
            Part::Marker(Marker {
                int: Some(mut f),
                n,
                component,
                ..
            }) => {
                f.n = n;
                Matcher {
                    regex: int_regex(&f)?,
                    parse: Parse::Int(f),
                    component,
                }
            }
            Part::Marker(m) => {
                let mut lookup = Vec::new();
                let cut = |name: &str| match m.width_max {
                    Some(w) if w > 0 => name.chars().take(w).collect(),
                    _ => name.to_owned(),
                };
                match m.component {
                    'M' | 'x' => {
                        for (i, name) in MONTHS.iter().enumerate() {
                            lookup.push((cut(name), i as i64 + 1));
                        }
                    }
                    'F' => {
                        for (i, name) in DAYS.iter().enumerate().skip(1) {
                            lookup.push((cut(name), i as i64));
                        }
                    }
                    'P' => {
                        for (name, v) in [("am", 0), ("AM", 0), ("pm", 1), ("PM", 1)] {
                            lookup.push((name.to_owned(), v));
                        }
                    }
                    other => {
                        return Err(err!(D3133, "The 'name' modifier can only be applied to months and days in the date/time picture string, not {other}"
                        ));
                    }
                }
                Matcher {
                    regex: "[a-zA-Z]+".into(),
                    parse: Parse::Names(lookup),
                    component: m.component,
                }
            }
        });
    }
    let full: String = matchers.iter().map(|m| format!("({})", m.regex)).collect();
    let re = regex::RegexBuilder::new(&format!("^{full}$"))
        .case_insensitive(true)
        .size_limit(1 << 22)
        .build()
        .map_err(|e| err!(D3136, "The date/time picture string cannot be matched: {e}"))?;
    let Some(caps) = re.captures(text) else {
        return Ok(None);
    };
    // Component values; NaN where a part matched but has no value (as the reference's
    // `undefined` lookups and NaN arithmetic).
    let mut comps: Vec<(char, f64)> = Vec::new();
    for (i, m) in matchers.iter().enumerate() {
        let s = caps.get(i + 1).map_or("", |c| c.as_str());
        let v = match &m.parse {
            Parse::None => continue,
            Parse::Int(f) => parse_int_text(s, f).unwrap_or(f64::NAN),
            // A name that is not in the list leaves the component unset (the reference's
            // lookup yields undefined).
            Parse::Names(l) => match l.iter().find(|(n, _)| n == s) {
                Some((_, v)) => *v as f64,
                None => continue,
            },
            Parse::Zone { separator, gmt } => {
                let s = if *gmt { &s[3.min(s.len())..] } else { s };
                let int = |t: &str| t.parse::<f64>().unwrap_or(f64::NAN);
                match separator {
                    Some(sep) => {
                        let (h, mi) = s.split_once(*sep).unwrap_or((s, "0"));
                        int(h) * 60.0 + int(mi)
                    }
                    None => {
                        if s.len() - 1 <= 2 {
                            int(s) * 60.0
                        } else {
                            int(&s[..3]) * 60.0 + int(&s[3..])
                        }
                    }
                }
            }
        };
        match comps.iter_mut().find(|(c, _)| *c == m.component) {
            Some(slot) => slot.1 = v,
            None => comps.push((m.component, v)),
        }
    }
    if comps.is_empty() {
        return Ok(None);
    }
    let get = |comps: &Vec<(char, f64)>, c: char| comps.iter().find(|(k, _)| *k == c).map(|x| x.1);
    let mask_of = |order: &str, comps: &Vec<(char, f64)>| -> u32 {
        // The reference tests a component's truthiness (0 counts as absent).
        order.chars().fold(0, |m, c| {
            (m << 1) | u32::from(get(comps, c).is_some_and(|v| v != 0.0 && !v.is_nan()))
        })
    };
    let is_type = |t: u32, mask: u32| (!t & mask) == 0 && (t & mask) != 0;
    let mask = mask_of("YXMxWwdD", &comps);
    let date_a = is_type(161, mask);
    let date_b = !date_a && is_type(130, mask);
    let date_c = is_type(84, mask);
    let date_d = !date_c && is_type(72, mask);
    let tmask = mask_of("PHhmsf", &comps);
    let time_a = is_type(23, tmask);
    let time_b = !time_a && is_type(47, tmask);
    let date_comps = if date_b {
        "YD"
    } else if date_c {
        "XxwF"
    } else if date_d {
        "XWF"
    } else {
        "YMD"
    };
    let time_comps = if time_b { "Phmsf" } else { "Hmsf" };
    let now = parts(now_ms);
    let (mut started, mut ended) = (false, false);
    for c in date_comps.chars().chain(time_comps.chars()) {
        if get(&comps, c).is_none() {
            let v = if started {
                ended = true;
                if "MDd".contains(c) { 1.0 } else { 0.0 }
            } else {
                component(&now, c).unwrap_or(0) as f64
            };
            comps.push((c, v));
        } else {
            started = true;
            if ended {
                return Err(err!(
                    D3136,
                    "The date/time picture string is missing specifiers required to parse the timestamp"
                ));
            }
        }
    }
    if date_c || date_d {
        return Err(err!(
            D3136,
            "The date/time picture string is missing specifiers required to parse the timestamp"
        ));
    }
    let g = |c: char| get(&comps, c).unwrap_or(0.0);
    let mut month0 = if g('M') > 0.0 { g('M') - 1.0 } else { 0.0 };
    let mut day = g('D');
    if date_b {
        let d = parts(utc(g('Y') as i64, 0, 1, 0, 0, 0, 0) + (g('d') as i64 - 1) * DAY_MS);
        month0 = d.month0 as f64;
        day = d.day as f64;
    }
    let mut hour = g('H');
    if time_b {
        hour = if g('h') == 12.0 { 0.0 } else { g('h') };
        if g('P') == 1.0 {
            hour += 12.0;
        }
    }
    let all = [g('Y'), month0, day, hour, g('m'), g('s'), g('f')];
    if all.iter().any(|v| !v.is_finite() || v.abs() > 1e9) {
        return Ok(Some(f64::NAN));
    }
    let mut millis = utc(
        all[0] as i64,
        all[1] as i64,
        all[2] as i64,
        all[3] as i64,
        all[4] as i64,
        all[5] as i64,
        all[6] as i64,
    ) as f64;
    let zone = get(&comps, 'Z').or_else(|| get(&comps, 'z')).unwrap_or(0.0);
    if zone != 0.0 {
        millis -= zone * 60_000.0;
    }
    Ok(Some(millis))
}

/// `$toMillis(timestamp)` without a picture: the ISO 8601 forms JSONata accepts
/// (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`, optionally `THH:MM:SS`, a fraction and `Z`/`±HH:MM`).
/// Times without an offset are UTC (as on Step Functions). `None` = not ISO 8601.
pub(crate) fn parse_iso(text: &str) -> Option<f64> {
    let re = regex::Regex::new(
        r"^(\d{4})(?:-([01]\d))?(?:-([0-3]\d))?(?:T([0-2]\d):([0-5]\d):([0-5]\d))?(\.\d+)?([+-][0-2]\d:?[0-5]\d|Z)?$",
    )
    .ok()?;
    let c = re.captures(text)?;
    let num = |i: usize, d: i64| c.get(i).map_or(Some(d), |m| m.as_str().parse::<i64>().ok());
    let (y, mo, d) = (num(1, 0)?, num(2, 1)?, num(3, 1)?);
    let (h, mi, s) = (num(4, 0)?, num(5, 0)?, num(6, 0)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 24 {
        return None;
    }
    let ms = c.get(7).map_or(0, |f| {
        let digits = &f.as_str()[1..];
        let padded: String = digits.chars().chain("000".chars()).take(3).collect();
        padded.parse::<i64>().unwrap_or(0)
    });
    let offset_min = match c.get(8).map(|m| m.as_str()) {
        None | Some("Z") => 0,
        Some(o) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let digits: String = o[1..].chars().filter(char::is_ascii_digit).collect();
            let hh: i64 = digits[..2].parse().ok()?;
            let mm: i64 = digits[2..].parse().ok()?;
            sign * (hh * 60 + mm)
        }
    };
    // Range-checked above: month 1..=12, day 1..=31.
    let days = clock::days_from_civil(y, mo as u32, d as u32);
    Some((days * DAY_MS + h * 3_600_000 + mi * 60_000 + s * 1000 + ms - offset_min * 60_000) as f64)
}
