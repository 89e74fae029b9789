//! Time expressions in recall queries and in memory text, parsed without an LLM.
//!
//! Recall needs to know that "What did Caroline do in May 2023?" is about May 2023 and that
//! "When did Melanie paint a sunrise?" wants a date back; memories need "next Friday" written
//! on 2023-05-08 pinned to 2023-05-12. A hand-rolled tokenizer and a small pattern matcher do
//! both deterministically (core has no `regex` dependency, and an LLM round-trip per query is
//! too slow and too costly for a filter hint).
//!
//! Conventions, chosen so that every range is a plain inclusive interval a store can filter on:
//! - English only, case-insensitive, all arithmetic in UTC on whole days: a range starts at
//!   00:00:00 of its first day and ends at 23:59:59.999999 of its last day.
//! - Weeks run Monday to Sunday (ISO); a weekend is Saturday and Sunday.
//! - Seasons are meteorological and northern-hemisphere: spring is March–May, summer
//!   June–August, autumn/fall September–November, winter December–February. "winter 2022"
//!   is the winter whose January falls in 2022 (December 2021 – February 2022).
//! - Anything named without a year (a month, "8 May", "in the summer", "Christmas", "on
//!   Friday") is the occurrence at or before the reference: recall asks about the past.
//! - "last X" is strictly before the current X, "next X" strictly after, "this X" the current
//!   one. "last week" is the previous calendar week; "the last week" and "the past week" are the
//!   rolling seven days up to the reference.
//! - Vague counts: "a couple (of)" = 2, "a few" = 3, "several" = 4. A rolling window ("the past
//!   few days") is that many units wide; "a few days ago" spans count−1 to count+1 units back,
//!   because the speaker did not count.
//! - "N units ago" is the calendar unit containing the reference minus N units ("two years
//!   ago" is all of 2021 from mid-2023; "3 weeks ago" is that whole ISO week).
//! - Open ends: "before X" starts at 0001-01-01; "since X" and "after X" end with the
//!   reference day (or at 9999-12-31 when X lies after the reference).
//! - A bare four-digit number is a year only when it is 1900..=2100 and either follows a date
//!   preposition ("in 2019", "since 2020", "during 2021") or "year", or stands alone as the
//!   question ("2022?", "What about 2022?"); a lowercase plural right after it ("in 2000
//!   books") means it is a count, not a year.
//! - A bare month name needs a date context: a preposition before it, or a day or year next to
//!   it. That keeps "May I ask", "what may happen" and "the march of time" out.

use chrono::{Datelike, Days, Months, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};

use crate::model::Timestamp;

/// A span of time found in text: a range to filter or boost by, or a "when" question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeHint {
    /// First instant of the range (00:00:00 UTC of its first day).
    pub start: Timestamp,
    /// Last instant of the range, inclusive (23:59:59.999999 UTC of its last day).
    pub end: Timestamp,
    /// How the range was derived.
    pub kind: TimeHintKind,
    /// The words that matched, as written (original case).
    pub matched: String,
}

/// How a [`TimeHint`] was derived; callers weigh a named date above a relative one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeHintKind {
    /// Named calendar dates: "May 2023", "2023-05-08", "the 1990s", "summer 2022", "in June".
    Absolute,
    /// Computed from the reference: "yesterday", "last Friday", "3 weeks ago", "recently".
    Relative,
    /// A "when did / what year / how long ago" question with no date in it. There is no range:
    /// `start == end == reference`. The signal is that the answer is a date, so recall should
    /// favour memories that carry one.
    When,
}

/// The time expression of a recall query, resolved against `reference` (normally now).
///
/// When several expressions occur the longest wins (ties: the first), so "in May 2023" beats
/// a stray "today". Falls back to a [`TimeHintKind::When`] hint for date questions.
pub fn parse_query_time(query: &str, reference: Timestamp) -> Option<TimeHint> {
    let parser = Parser::new(query, reference);
    let mut best: Option<(usize, usize, Hit)> = None;
    for i in 0..parser.toks.len() {
        if let Some(hit) = parser.at(i) {
            let len = hit.end - i;
            if best.as_ref().is_none_or(|(_, l, _)| len > *l) {
                best = Some((i, len, hit));
            }
        }
    }
    if let Some((i, _, hit)) = best {
        return Some(parser.hint(i, &hit));
    }
    let (i, end) = parser.when_question()?;
    Some(TimeHint {
        start: reference,
        end: reference,
        kind: TimeHintKind::When,
        matched: parser.span(i, end),
    })
}

/// Every dated expression written inside a memory ("next Friday", "last summer", "yesterday"),
/// resolved against the memory's own event time, left to right and non-overlapping.
/// Never returns [`TimeHintKind::When`] hints.
pub fn resolve_in_text(text: &str, event_time: Timestamp) -> Vec<TimeHint> {
    let parser = Parser::new(text, event_time);
    let mut out = Vec::new();
    let mut i = 0;
    while i < parser.toks.len() {
        match parser.at(i) {
            Some(hit) => {
                out.push(parser.hint(i, &hit));
                i = hit.end.max(i + 1);
            }
            None => i += 1,
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// Lowercased word; apostrophes kept ("valentine's").
    Word(String),
    /// A plain or ordinal number ("8", "8th"); `digits` tells a year from a day.
    Num {
        value: u32,
        digits: usize,
        ordinal: bool,
    },
    /// A numeric date literal ("2023-05-08", "05/08/2023", "2023-05"), already a range.
    Lit(NaiveDate, NaiveDate),
    /// A decade ("1990s", "'90s"): its first year, and whether it was written with two digits
    /// (those need "the": "in my 20s" is an age).
    Decade(i32, bool),
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
    /// First letter was uppercase in the original (a proper noun after a year is not a count).
    cap: bool,
}

/// Splits text into words, numbers and punctuation. Hyphens and quotes separate tokens and
/// vanish ("mid-2022" reads as "mid 2022"), except inside a numeric date literal.
fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let byte_at = |k: usize| if k < n { chars[k].0 } else { text.len() };
    let is_apos = |c: char| c == '\'' || c == '\u{2019}';
    let mut out = Vec::new();
    let mut k = 0;
    while k < n {
        let c = chars[k].1;
        if c.is_whitespace()
            || matches!(
                c,
                '-' | '\u{2013}'
                    | '\u{2014}'
                    | '"'
                    | '\u{201c}'
                    | '\u{201d}'
                    | '('
                    | ')'
                    | '['
                    | ']'
            )
        {
            k += 1;
            continue;
        }
        if c.is_alphabetic() {
            let mut j = k;
            let mut word = String::new();
            while j < n {
                let d = chars[j].1;
                if d.is_alphabetic() {
                    word.extend(d.to_lowercase());
                    j += 1;
                } else if is_apos(d) && j + 1 < n && chars[j + 1].1.is_alphabetic() {
                    word.push('\'');
                    j += 1;
                } else {
                    break;
                }
            }
            out.push(Token {
                tok: Tok::Word(word),
                start: byte_at(k),
                end: byte_at(j),
                cap: c.is_uppercase(),
            });
            k = j;
            continue;
        }
        if c.is_ascii_digit() {
            if let Some((tok, j)) = date_literal(&chars, k) {
                out.push(Token {
                    tok,
                    start: byte_at(k),
                    end: byte_at(j),
                    cap: false,
                });
                k = j;
                continue;
            }
            let mut j = k;
            while j < n && chars[j].1.is_ascii_digit() {
                j += 1;
            }
            let digits: String = chars[k..j].iter().map(|&(_, d)| d).collect();
            let mut l = j;
            while l < n && chars[l].1.is_alphabetic() {
                l += 1;
            }
            let suffix: String = chars[j..l]
                .iter()
                .flat_map(|&(_, d)| d.to_lowercase())
                .collect();
            let value = digits.parse::<u32>().ok();
            let tok = match (value, suffix.as_str()) {
                (Some(value), "") => Tok::Num {
                    value,
                    digits: digits.len(),
                    ordinal: false,
                },
                (Some(value), "st" | "nd" | "rd" | "th") => Tok::Num {
                    value,
                    digits: digits.len(),
                    ordinal: true,
                },
                (Some(value), "s")
                    if value.is_multiple_of(10) && (digits.len() == 4 || digits.len() == 2) =>
                {
                    Tok::Decade(decade_year(value, digits.len()), digits.len() == 2)
                }
                _ => Tok::Word(format!("{digits}{suffix}")),
            };
            out.push(Token {
                tok,
                start: byte_at(k),
                end: byte_at(l),
                cap: false,
            });
            k = l;
            continue;
        }
        // "'90s"
        if is_apos(c)
            && k + 3 < n
            && chars[k + 1].1.is_ascii_digit()
            && chars[k + 2].1.is_ascii_digit()
            && chars[k + 3].1 == 's'
        {
            let value = chars[k + 1].1.to_digit(10).unwrap_or(0) * 10
                + chars[k + 2].1.to_digit(10).unwrap_or(0);
            if value.is_multiple_of(10) && !(k + 4 < n && chars[k + 4].1.is_alphanumeric()) {
                out.push(Token {
                    tok: Tok::Decade(decade_year(value, 2), true),
                    start: byte_at(k),
                    end: byte_at(k + 4),
                    cap: false,
                });
                k += 4;
                continue;
            }
        }
        out.push(Token {
            tok: Tok::Punct(c),
            start: byte_at(k),
            end: byte_at(k + 1),
            cap: false,
        });
        k += 1;
    }
    out
}

/// Two-digit decades: the '30s to the '90s are the 1900s, the '00s to the '20s the 2000s.
fn decade_year(value: u32, digits: usize) -> i32 {
    let v = value as i32;
    match digits {
        2 if v >= 30 => 1900 + v,
        2 => 2000 + v,
        _ => v,
    }
}

/// "2023-05-08", "2023/05/08", "05/08/2023" and "05-08-2023" (US month first), "2023-05".
fn date_literal(chars: &[(usize, char)], k: usize) -> Option<(Tok, usize)> {
    let n = chars.len();
    let mut parts: Vec<String> = Vec::new();
    let mut sep = None;
    let mut j = k;
    loop {
        let s = j;
        while j < n && chars[j].1.is_ascii_digit() {
            j += 1;
        }
        if j == s || j - s > 4 {
            return None;
        }
        parts.push(chars[s..j].iter().map(|&(_, c)| c).collect());
        if parts.len() == 3
            || j + 1 >= n
            || !matches!(chars[j].1, '-' | '/')
            || !chars[j + 1].1.is_ascii_digit()
        {
            break;
        }
        if sep.is_some_and(|s| s != chars[j].1) {
            break;
        }
        sep = Some(chars[j].1);
        j += 1;
    }
    if j < n && chars[j].1.is_alphanumeric() {
        return None;
    }
    let num = |s: &String| s.parse::<u32>().ok();
    match parts.as_slice() {
        [y, m, d] if y.len() == 4 && m.len() <= 2 && d.len() <= 2 => {
            let date = NaiveDate::from_ymd_opt(num(y)? as i32, num(m)?, num(d)?)?;
            Some((Tok::Lit(date, date), j))
        }
        [m, d, y] if y.len() == 4 && m.len() <= 2 && d.len() <= 2 => {
            // US month first; a first number above 12 can only be a day ("13/05/2023").
            let (y, m, d) = (num(y)? as i32, num(m)?, num(d)?);
            let date =
                NaiveDate::from_ymd_opt(y, m, d).or_else(|| NaiveDate::from_ymd_opt(y, d, m))?;
            Some((Tok::Lit(date, date), j))
        }
        [y, m] if y.len() == 4 && m.len() <= 2 => {
            let (from, to) = month_range(num(y)? as i32, num(m)?)?;
            Some((Tok::Lit(from, to), j))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Calendar helpers

fn ymd(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

fn floor_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or(NaiveDate::MIN)
}

fn ceiling_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or(NaiveDate::MAX)
}

fn month_range(y: i32, m: u32) -> Option<(NaiveDate, NaiveDate)> {
    let first = ymd(y, m, 1)?;
    let last = first.checked_add_months(Months::new(1))?.pred_opt()?;
    Some((first, last))
}

fn year_range(y: i32) -> Option<(NaiveDate, NaiveDate)> {
    Some((ymd(y, 1, 1)?, ymd(y, 12, 31)?))
}

fn week_range(d: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
    let monday = d.checked_sub_days(Days::new(u64::from(d.weekday().num_days_from_monday())))?;
    Some((monday, monday.checked_add_days(Days::new(6))?))
}

fn add_days(d: NaiveDate, n: i64) -> Option<NaiveDate> {
    if n >= 0 {
        d.checked_add_days(Days::new(n as u64))
    } else {
        d.checked_sub_days(Days::new(n.unsigned_abs()))
    }
}

fn add_months(d: NaiveDate, n: i64) -> Option<NaiveDate> {
    let m = Months::new(u32::try_from(n.unsigned_abs()).ok()?);
    if n >= 0 {
        d.checked_add_months(m)
    } else {
        d.checked_sub_months(m)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Day,
    Week,
    Month,
    Year,
}

/// The date `n` units from `d` (negative: back), day-precise.
fn shift(d: NaiveDate, unit: Unit, n: i64) -> Option<NaiveDate> {
    match unit {
        Unit::Day => add_days(d, n),
        Unit::Week => add_days(d, n.checked_mul(7)?),
        Unit::Month => add_months(d, n),
        Unit::Year => add_months(d, n.checked_mul(12)?),
    }
}

/// The calendar unit (day, ISO week, month, year) containing `d`.
fn unit_range(d: NaiveDate, unit: Unit) -> Option<(NaiveDate, NaiveDate)> {
    match unit {
        Unit::Day => Some((d, d)),
        Unit::Week => week_range(d),
        Unit::Month => month_range(d.year(), d.month()),
        Unit::Year => year_range(d.year()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Season {
    Spring,
    Summer,
    Autumn,
    Winter,
}

/// The occurrence of `season` that starts in calendar year `y` (winter: December `y` to
/// February `y + 1`).
fn season_occurrence(season: Season, y: i32) -> Option<(NaiveDate, NaiveDate)> {
    let (m1, m2) = match season {
        Season::Spring => (3, 5),
        Season::Summer => (6, 8),
        Season::Autumn => (9, 11),
        Season::Winter => (12, 2),
    };
    let from = ymd(y, m1, 1)?;
    let to_year = if m2 < m1 { y + 1 } else { y };
    Some((from, month_range(to_year, m2)?.1))
}

/// "this summer": the occurrence containing `today`, else the one starting this year.
fn this_season_year(season: Season, today: NaiveDate) -> i32 {
    for y in [today.year() - 1, today.year()] {
        if let Some((from, to)) = season_occurrence(season, y) {
            if from <= today && today <= to {
                return y;
            }
        }
    }
    today.year()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Holiday {
    Christmas,
    ChristmasEve,
    NewYearsEve,
    NewYearsDay,
    Halloween,
    Valentines,
}

fn holiday_date(h: Holiday, y: i32) -> Option<NaiveDate> {
    match h {
        Holiday::Christmas => ymd(y, 12, 25),
        Holiday::ChristmasEve => ymd(y, 12, 24),
        Holiday::NewYearsEve => ymd(y, 12, 31),
        Holiday::NewYearsDay => ymd(y, 1, 1),
        Holiday::Halloween => ymd(y, 10, 31),
        Holiday::Valentines => ymd(y, 2, 14),
    }
}

/// Early / mid / late part of a range: thirds of a year by months (Jan–Apr, May–Aug, Sep–Dec),
/// of a month by days (1–10, 11–20, 21–end), of a decade by years (0–3, 4–6, 7–9), else by days.
fn portion(from: NaiveDate, to: NaiveDate, part: usize) -> Option<(NaiveDate, NaiveDate)> {
    let whole_years = from.month() == 1 && from.day() == 1 && to.month() == 12 && to.day() == 31;
    if whole_years && to.year() == from.year() {
        let (a, b) = [(1, 4), (5, 8), (9, 12)][part];
        return Some((ymd(from.year(), a, 1)?, month_range(from.year(), b)?.1));
    }
    if whole_years && to.year() - from.year() == 9 {
        let (a, b) = [(0, 3), (4, 6), (7, 9)][part];
        return Some((ymd(from.year() + a, 1, 1)?, ymd(from.year() + b, 12, 31)?));
    }
    let whole_month = from.day() == 1
        && month_range(from.year(), from.month()).is_some_and(|(_, last)| last == to);
    if whole_month {
        let (a, b) = [(1, 10), (11, 20), (21, to.day())][part];
        return Some((
            ymd(from.year(), from.month(), a)?,
            ymd(from.year(), from.month(), b)?,
        ));
    }
    let days = (to - from).num_days() + 1;
    let third = days / 3;
    match part {
        0 => Some((from, add_days(from, (third - 1).max(0))?)),
        1 => Some((
            add_days(from, third)?,
            add_days(from, (2 * third - 1).max(third))?,
        )),
        _ => Some((add_days(from, 2 * third)?.min(to), to)),
    }
}

fn day_start(d: NaiveDate) -> Timestamp {
    Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN))
}

fn day_end(d: NaiveDate) -> Timestamp {
    let t = NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap_or(NaiveTime::MIN);
    Utc.from_utc_datetime(&d.and_time(t))
}

// ---------------------------------------------------------------------------------------------
// Word tables

fn month_word(w: &str) -> Option<(u32, bool)> {
    const FULL: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    if let Some(i) = FULL.iter().position(|&m| m == w) {
        return Some((i as u32 + 1, false));
    }
    let abbrev = match w {
        "jan" => 1,
        "feb" => 2,
        "mar" => 3,
        "apr" => 4,
        "jun" => 6,
        "jul" => 7,
        "aug" => 8,
        "sep" | "sept" => 9,
        "oct" => 10,
        "nov" => 11,
        "dec" => 12,
        _ => return None,
    };
    Some((abbrev, true))
}

fn weekday_word(w: &str) -> Option<Weekday> {
    Some(match w {
        "monday" => Weekday::Mon,
        "tuesday" => Weekday::Tue,
        "wednesday" => Weekday::Wed,
        "thursday" => Weekday::Thu,
        "friday" => Weekday::Fri,
        "saturday" => Weekday::Sat,
        "sunday" => Weekday::Sun,
        _ => return None,
    })
}

fn season_word(w: &str) -> Option<Season> {
    Some(match w {
        "spring" => Season::Spring,
        "summer" => Season::Summer,
        "autumn" | "fall" => Season::Autumn,
        "winter" => Season::Winter,
        _ => return None,
    })
}

fn unit_word(w: &str) -> Option<Unit> {
    Some(match w {
        "day" | "days" => Unit::Day,
        "week" | "weeks" => Unit::Week,
        "month" | "months" => Unit::Month,
        "year" | "years" => Unit::Year,
        _ => return None,
    })
}

fn small_number(w: &str) -> Option<i64> {
    const WORDS: [&str; 12] = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve",
    ];
    WORDS.iter().position(|&x| x == w).map(|i| i as i64 + 1)
}

/// Prepositions that put a month, season, holiday or year in a date context. "by", "to" and
/// "with" are left out: "written by May", "talked to June".
const PREPS: &[&str] = &[
    "in",
    "on",
    "during",
    "of",
    "at",
    "around",
    "from",
    "over",
    "within",
    "for",
    "throughout",
    "through",
];

/// Lowercase "-s" words that may follow a year without making it a count ("in 2019 was...").
const NOT_PLURAL: &[&str] = &[
    "was",
    "is",
    "has",
    "as",
    "his",
    "this",
    "its",
    "us",
    "does",
    "yes",
    "whereas",
    "plus",
    "thus",
    "across",
    "towards",
    "afterwards",
    "always",
    "perhaps",
    "besides",
    "unless",
];

/// Count nouns without a final "s" that make the number before them a count.
const IRREGULAR_PLURALS: &[&str] = &[
    "people", "men", "women", "children", "feet", "teeth", "mice", "geese", "sheep", "fish",
];

// ---------------------------------------------------------------------------------------------
// Parser

/// A match: the token after it and its inclusive day range.
#[derive(Debug, Clone)]
struct Hit {
    end: usize,
    from: NaiveDate,
    to: NaiveDate,
    kind: TimeHintKind,
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<Token>,
    today: NaiveDate,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, reference: Timestamp) -> Self {
        Parser {
            text,
            toks: tokenize(text),
            today: reference.date_naive(),
        }
    }

    fn hint(&self, i: usize, hit: &Hit) -> TimeHint {
        TimeHint {
            start: day_start(hit.from),
            end: day_end(hit.to),
            kind: hit.kind,
            matched: self.span(i, hit.end),
        }
    }

    fn span(&self, i: usize, end: usize) -> String {
        match (
            self.toks.get(i),
            end.checked_sub(1).and_then(|e| self.toks.get(e)),
        ) {
            (Some(a), Some(b)) => self.text[a.start..b.end].to_string(),
            _ => String::new(),
        }
    }

    fn word(&self, i: usize) -> Option<&str> {
        match &self.toks.get(i)?.tok {
            Tok::Word(w) => Some(w.as_str()),
            _ => None,
        }
    }

    fn is(&self, i: usize, words: &[&str]) -> bool {
        self.word(i).is_some_and(|w| words.contains(&w))
    }

    fn punct(&self, i: usize, c: char) -> bool {
        matches!(self.toks.get(i), Some(Token { tok: Tok::Punct(p), .. }) if *p == c)
    }

    /// Skips an optional comma ("May 8, 2023").
    fn skip_comma(&self, i: usize) -> usize {
        if self.punct(i, ',') {
            i + 1
        } else {
            i
        }
    }

    fn num(&self, i: usize) -> Option<(u32, usize, bool)> {
        match self.toks.get(i)?.tok {
            Tok::Num {
                value,
                digits,
                ordinal,
            } => Some((value, digits, ordinal)),
            _ => None,
        }
    }

    /// A day of the month: 1..=31, one or two digits, optionally ordinal.
    fn day_num(&self, i: usize) -> Option<(u32, bool)> {
        let (value, digits, ordinal) = self.num(i)?;
        ((1..=31).contains(&value) && digits <= 2).then_some((value, ordinal))
    }

    /// A four-digit year where the context already says it is one ("May 2023").
    fn year(&self, i: usize) -> Option<i32> {
        let (value, digits, ordinal) = self.num(i)?;
        (digits == 4 && !ordinal && (1000..=2999).contains(&value)).then_some(value as i32)
    }

    /// A bare year: 1900..=2100 and not followed by a lowercase plural ("in 2000 books").
    fn bare_year(&self, i: usize) -> Option<i32> {
        let y = self.year(i)?;
        if !(1900..=2100).contains(&y) {
            return None;
        }
        if let Some(next) = self.toks.get(i + 1) {
            match &next.tok {
                Tok::Word(w) if !next.cap => {
                    let plural = w.ends_with('s')
                        && w.len() > 2
                        && !w.contains('\'')
                        && !NOT_PLURAL.contains(&w.as_str());
                    if plural || IRREGULAR_PLURALS.contains(&w.as_str()) {
                        return None;
                    }
                }
                Tok::Num { .. } => return None,
                _ => {}
            }
        }
        Some(y)
    }

    fn month(&self, i: usize) -> Option<(u32, bool)> {
        month_word(self.word(i)?)
    }

    /// A count: digits, one..twelve, "a"/"an" (1), "a couple (of)" (2), "a few" (3),
    /// "several" (4). Returns the next token, the count and whether it is vague.
    fn count(&self, i: usize) -> Option<(usize, i64, bool)> {
        if let Some((value, digits, false)) = self.num(i) {
            return (digits <= 3 && value >= 1).then_some((i + 1, i64::from(value), false));
        }
        let w = self.word(i)?;
        let (i, w) = if matches!(w, "a" | "an") {
            match self.word(i + 1) {
                Some(next @ ("couple" | "few")) => (i + 1, next),
                _ => return Some((i + 1, 1, false)),
            }
        } else {
            (i, w)
        };
        match w {
            "couple" => Some((
                if self.is(i + 1, &["of"]) {
                    i + 2
                } else {
                    i + 1
                },
                2,
                true,
            )),
            "few" => Some((i + 1, 3, true)),
            "several" => Some((i + 1, 4, true)),
            _ => small_number(w).map(|n| (i + 1, n, false)),
        }
    }

    fn hit(end: usize, range: Option<(NaiveDate, NaiveDate)>, kind: TimeHintKind) -> Option<Hit> {
        let (from, to) = range?;
        Some(Hit {
            end,
            from,
            to,
            kind,
        })
    }

    /// A yearless month/day, or month: the occurrence at or before today.
    fn month_day_before_today(&self, m: u32, day: Option<u32>) -> Option<(NaiveDate, NaiveDate)> {
        let y = self.today.year();
        match day {
            Some(d) => (0..8)
                .find_map(|back| ymd(y - back, m, d).filter(|date| *date <= self.today))
                .map(|d| (d, d)),
            None => {
                let (from, to) = month_range(y, m)?;
                if from <= self.today {
                    Some((from, to))
                } else {
                    month_range(y - 1, m)
                }
            }
        }
    }

    /// Everything that may start at token `i`: a compound (between/since/before/after/until),
    /// a preposition plus an expression, or an expression.
    fn at(&self, i: usize) -> Option<Hit> {
        if let Some(hit) = self.compound(i) {
            return Some(hit);
        }
        if let Some(prep) = self.word(i).filter(|w| PREPS.contains(w)) {
            if let Some(hit) = self.expr(i + 1, Some(prep)) {
                return Some(hit);
            }
        }
        self.expr(i, None)
    }

    fn compound(&self, i: usize) -> Option<Hit> {
        let w = self.word(i)?;
        let today = self.today;
        match w {
            "between" | "from" => {
                if let Some(hit) = self.month_pair(i + 1) {
                    return Some(hit);
                }
                let a = self.expr(i + 1, Some(w))?;
                let seps: &[&str] = if w == "between" {
                    &["and"]
                } else {
                    &["to", "until", "till", "through", "thru"]
                };
                if !self.is(a.end, seps) {
                    return None;
                }
                let b = self.expr(a.end + 1, Some(w))?;
                Some(Hit {
                    end: b.end,
                    from: a.from.min(b.from),
                    to: a.to.max(b.to),
                    kind: a.kind,
                })
            }
            "since" | "after" => {
                let a = self.expr(i + 1, Some(w))?;
                let from = if w == "since" {
                    a.from
                } else {
                    a.to.succ_opt()?
                };
                let to = if from <= today { today } else { ceiling_date() };
                Some(Hit {
                    end: a.end,
                    from,
                    to,
                    kind: a.kind,
                })
            }
            "before" | "until" | "till" | "prior" => {
                let j = if w == "prior" {
                    if !self.is(i + 1, &["to"]) {
                        return None;
                    }
                    i + 2
                } else {
                    i + 1
                };
                let a = self.expr(j, Some(w))?;
                let to = if matches!(w, "until" | "till") {
                    a.to
                } else {
                    a.from.pred_opt()?
                };
                Some(Hit {
                    end: a.end,
                    from: floor_date(),
                    to,
                    kind: a.kind,
                })
            }
            _ => None,
        }
    }

    /// A month with an optional day, no year: "May", "May 8", "8 May", "the 8th of May".
    fn month_day(&self, i: usize) -> Option<(usize, u32, Option<u32>)> {
        if let Some((m, _)) = self.month(i) {
            return Some(match self.day_num(i + 1) {
                Some((d, _)) if self.year(i + 1).is_none() => (i + 2, m, Some(d)),
                _ => (i + 1, m, None),
            });
        }
        let j = if self.is(i, &["the"]) { i + 1 } else { i };
        let (d, ordinal) = self.day_num(j)?;
        let k = if ordinal && self.is(j + 1, &["of"]) {
            j + 2
        } else {
            j + 1
        };
        let (m, _) = self.month(k)?;
        Some((k + 1, m, Some(d)))
    }

    /// "between May and July 2023", "from May 8 to May 12": one year shared by both ends.
    fn month_pair(&self, i: usize) -> Option<Hit> {
        let (j, m1, d1) = self.month_day(i)?;
        if !self.is(j, &["and", "to", "until", "till", "through", "thru"]) {
            return None;
        }
        let (k, m2, d2) = self.month_day(j + 1)?;
        let after = self.skip_comma(k);
        let (end, year) = match self.year(after) {
            Some(y) => (after + 1, y),
            None => {
                let (from, _) = self.month_day_before_today(m1, d1)?;
                (k, from.year())
            }
        };
        let first = match d1 {
            Some(d) => ymd(year, m1, d)?,
            None => month_range(year, m1)?.0,
        };
        let second_year = |y: i32| -> Option<NaiveDate> {
            match d2 {
                Some(d) => ymd(y, m2, d),
                None => month_range(y, m2).map(|r| r.1),
            }
        };
        let mut last = second_year(year)?;
        if last < first {
            // "between November and February": the second end is in the next year.
            if self.year(after).is_some() {
                // The written year belongs to the second end.
                let first = match d1 {
                    Some(d) => ymd(year - 1, m1, d)?,
                    None => month_range(year - 1, m1)?.0,
                };
                return Some(Hit {
                    end,
                    from: first,
                    to: last,
                    kind: TimeHintKind::Absolute,
                });
            }
            last = second_year(year + 1)?;
        }
        Some(Hit {
            end,
            from: first,
            to: last,
            kind: TimeHintKind::Absolute,
        })
    }

    /// One time expression at `i`; `prep` is the date preposition right before it, if any.
    fn expr(&self, i: usize, prep: Option<&str>) -> Option<Hit> {
        if self.is(i, &["the"]) {
            if let Some(hit) = self.expr_inner(i + 1, prep, true) {
                return Some(hit);
            }
        }
        self.expr_inner(i, prep, false)
    }

    fn expr_inner(&self, i: usize, prep: Option<&str>, the: bool) -> Option<Hit> {
        use TimeHintKind::{Absolute, Relative};
        let today = self.today;
        // Months, seasons, holidays and weekdays need a preposition ("the march of time").
        let ctx = prep.is_some();
        let tok = self.toks.get(i)?;
        match &tok.tok {
            Tok::Lit(from, to) => {
                return Some(Hit {
                    end: i + 1,
                    from: *from,
                    to: *to,
                    kind: Absolute,
                })
            }
            Tok::Decade(y, short) => {
                if *short && !the {
                    return None;
                }
                return Self::hit(
                    i + 1,
                    Some((ymd(*y, 1, 1)?, ymd(*y + 9, 12, 31)?)),
                    Absolute,
                );
            }
            Tok::Num { .. } => {
                if let Some(hit) = self.numeric_start(i, prep, the) {
                    return Some(hit);
                }
            }
            Tok::Punct(_) => return None,
            Tok::Word(_) => {}
        }
        let w = self.word(i)?;

        // early / mid / late X, the beginning / middle / end of X
        let part = match w {
            "early" => Some((0, i + 1)),
            "mid" | "middle" if !self.is(i + 1, &["of"]) => Some((1, i + 1)),
            "late" => Some((2, i + 1)),
            "beginning" | "start" if self.is(i + 1, &["of"]) => Some((0, i + 2)),
            "middle" if self.is(i + 1, &["of"]) => Some((1, i + 2)),
            "end" if self.is(i + 1, &["of"]) => Some((2, i + 2)),
            _ => None,
        };
        if let Some((part, j)) = part {
            if let Some(a) = self.expr(j, Some("of")) {
                return Self::hit(a.end, portion(a.from, a.to, part), a.kind);
            }
        }

        // Months: "May 8th, 2023", "May 2023", "May of 2023", "in May".
        if let Some((m, abbrev)) = month_word(w) {
            let mut j = i + 1;
            if abbrev && self.punct(j, '.') {
                j += 1;
            }
            if let Some((d, _)) = self.day_num(j) {
                let k = self.skip_comma(j + 1);
                if let Some(y) = self.year(k) {
                    let date = ymd(y, m, d);
                    return Self::hit(k + 1, date.map(|d| (d, d)), Absolute);
                }
                return Self::hit(j + 1, self.month_day_before_today(m, Some(d)), Absolute);
            }
            let k = if self.is(j, &["of"]) {
                j + 1
            } else {
                self.skip_comma(j)
            };
            if let Some(y) = self.year(k) {
                return Self::hit(k + 1, month_range(y, m), Absolute);
            }
            if ctx && !abbrev {
                return Self::hit(i + 1, self.month_day_before_today(m, None), Absolute);
            }
            return None;
        }

        // Seasons: "summer 2022", "the spring of 2021", "in the summer".
        if let Some(season) = season_word(w) {
            let k = if self.is(i + 1, &["of"]) {
                i + 2
            } else {
                i + 1
            };
            if let Some(y) = self.year(k) {
                let start_year = if season == Season::Winter { y - 1 } else { y };
                return Self::hit(k + 1, season_occurrence(season, start_year), Absolute);
            }
            if ctx && !matches!(prep, Some("of" | "at")) {
                let y = this_season_year(season, today);
                let y = match season_occurrence(season, y) {
                    Some((from, _)) if from > today => y - 1,
                    _ => y,
                };
                return Self::hit(i + 1, season_occurrence(season, y), Absolute);
            }
            return None;
        }

        // Holidays: "Christmas 2022", "on Christmas Eve", "new year's eve".
        if let Some((h, j)) = self.holiday(i) {
            if let Some(y) = self.year(j) {
                return Self::hit(j + 1, holiday_date(h, y).map(|d| (d, d)), Absolute);
            }
            if ctx {
                let y = today.year();
                let date = holiday_date(h, y)
                    .filter(|d| *d <= today)
                    .or_else(|| holiday_date(h, y - 1));
                return Self::hit(j, date.map(|d| (d, d)), Absolute);
            }
            return None;
        }

        // "the year 2022", bare years after a preposition, "2022?" as the whole question.
        if w == "year" {
            if let Some(y) = self.year(i + 1) {
                return Self::hit(i + 2, year_range(y), Absolute);
            }
        }

        // Single words relative to today.
        let day = |offset: i64, end: usize| {
            Self::hit(end, add_days(today, offset).map(|d| (d, d)), Relative)
        };
        match w {
            "today" | "today's" | "tonight" | "tonight's" => return day(0, i + 1),
            "yesterday" | "yesterday's" => return day(-1, i + 1),
            "tomorrow" | "tomorrow's" => return day(1, i + 1),
            "recently" | "lately" => {
                return Self::hit(i + 1, Some((add_days(today, -30)?, today)), Relative)
            }
            "day" if the && self.is(i + 1, &["before"]) && self.is(i + 2, &["yesterday"]) => {
                return day(-2, i + 3)
            }
            "day" if the && self.is(i + 1, &["after"]) && self.is(i + 2, &["tomorrow"]) => {
                return day(2, i + 3)
            }
            "other" if the && self.is(i + 1, &["day"]) => {
                return Self::hit(
                    i + 2,
                    Some((add_days(today, -7)?, add_days(today, -1)?)),
                    Relative,
                )
            }
            "weekend" if the && prep.is_some() => {
                // "over the weekend": the most recent weekend that has begun.
                let (monday, _) = week_range(today)?;
                let sat = add_days(monday, 5)?;
                let sat = if sat <= today {
                    sat
                } else {
                    add_days(sat, -7)?
                };
                return Self::hit(i + 1, Some((sat, add_days(sat, 1)?)), Relative);
            }
            "earlier" | "later" if self.is(i + 1, &["today"]) => return day(0, i + 2),
            "earlier" | "later" if self.is(i + 1, &["this"]) => {
                let unit = unit_word(self.word(i + 2)?)?;
                let (from, to) = unit_range(today, unit)?;
                let range = if w == "earlier" {
                    (from, today)
                } else {
                    (today, to)
                };
                return Self::hit(i + 3, Some(range), Relative);
            }
            _ => {}
        }

        if let Some(hit) = self.last_this_next(i, the) {
            return Some(hit);
        }

        // "on Friday": the most recent Friday, today included.
        if let Some(wd) = weekday_word(w) {
            if ctx {
                let back =
                    (today.weekday().num_days_from_monday() + 7 - wd.num_days_from_monday()) % 7;
                return day(-i64::from(back), i + 1);
            }
            return None;
        }

        // "a few days ago", "a year ago", "in two weeks".
        self.counted(i, prep)
    }

    /// Expressions that start with a number: "8 May 2023", "the 8th of May", a year, "3 weeks
    /// ago".
    fn numeric_start(&self, i: usize, prep: Option<&str>, the: bool) -> Option<Hit> {
        use TimeHintKind::Absolute;
        if let Some((d, ordinal)) = self.day_num(i) {
            let k = if ordinal && self.is(i + 1, &["of"]) {
                i + 2
            } else {
                i + 1
            };
            if let Some((m, _)) = self.month(k) {
                let mut j = k + 1;
                if self.punct(j, '.') && self.month(k).is_some_and(|(_, abbrev)| abbrev) {
                    j += 1;
                }
                let y_at = self.skip_comma(j);
                if let Some(y) = self.year(y_at) {
                    return Self::hit(y_at + 1, ymd(y, m, d).map(|d| (d, d)), Absolute);
                }
                return Self::hit(k + 1, self.month_day_before_today(m, Some(d)), Absolute);
            }
        }
        if let Some(hit) = self.counted(i, prep) {
            return Some(hit);
        }
        let y = self.bare_year(i)?;
        // "2022?" / "What happened 2022?" / "What about 2022." ask about the year itself.
        let after = self.toks.get(i + 1).map(|t| &t.tok);
        let question = matches!(after, Some(Tok::Punct('?')))
            || ((i == 0
                || matches!(self.toks.get(i - 1).map(|t| &t.tok), Some(Tok::Punct(_)))
                || self.is(i.wrapping_sub(1), &["about", "and", "or"]))
                && matches!(after, None | Some(Tok::Punct('.' | '!'))));
        if prep.is_none() && !the && !question {
            return None;
        }
        Self::hit(i + 1, year_range(y), Absolute)
    }

    fn holiday(&self, i: usize) -> Option<(Holiday, usize)> {
        match self.word(i)? {
            "christmas" | "xmas" => Some(match self.word(i + 1) {
                Some("eve") => (Holiday::ChristmasEve, i + 2),
                Some("day") => (Holiday::Christmas, i + 2),
                _ => (Holiday::Christmas, i + 1),
            }),
            "halloween" => Some((Holiday::Halloween, i + 1)),
            "valentine's" | "valentines" if self.is(i + 1, &["day"]) => {
                Some((Holiday::Valentines, i + 2))
            }
            "new" if self.is(i + 1, &["year's", "years"]) => match self.word(i + 2) {
                Some("eve") => Some((Holiday::NewYearsEve, i + 3)),
                Some("day") => Some((Holiday::NewYearsDay, i + 3)),
                _ => None,
            },
            _ => None,
        }
    }

    /// last / this / next / past / previous + week, month, year, weekend, weekday, month name,
    /// season, holiday, night, morning; and rolling windows ("the past 3 months").
    fn last_this_next(&self, i: usize, the: bool) -> Option<Hit> {
        use TimeHintKind::Relative;
        let today = self.today;
        let (dir, j) = match self.word(i)? {
            "this" if self.is(i + 1, &["past"]) => (-1, i + 2),
            "last" | "previous" => (-1, i + 1),
            "past" => (-2, i + 1),
            "this" => (0, i + 1),
            "next" => (1, i + 1),
            _ => return None,
        };
        let is_last_word = matches!(self.word(i), Some("last" | "past"));

        // Rolling windows: "the past week", "past 3 months", "the last few days".
        if is_last_word {
            if let Some((k, n, _)) = self.count(j) {
                if let Some(unit) = self.word(k).and_then(unit_word) {
                    return Self::hit(k + 1, Some((shift(today, unit, -n)?, today)), Relative);
                }
            }
            if the || dir == -2 {
                if let Some(unit) = self.word(j).and_then(unit_word) {
                    if unit != Unit::Day {
                        return Self::hit(j + 1, Some((shift(today, unit, -1)?, today)), Relative);
                    }
                }
            }
        }
        let dir = dir.max(-1);
        let w = self.word(j)?;
        let end = j + 1;

        match w {
            "night" if dir == -1 => {
                return Self::hit(end, add_days(today, -1).map(|d| (d, d)), Relative)
            }
            "morning" | "afternoon" | "evening" | "night" if dir == 0 => {
                return Self::hit(end, Some((today, today)), Relative);
            }
            "weekend" => {
                let (monday, _) = week_range(today)?;
                let sat = add_days(monday, 5 + 7 * dir)?;
                return Self::hit(end, Some((sat, add_days(sat, 1)?)), Relative);
            }
            _ => {}
        }
        if let Some(unit) = unit_word(w).filter(|u| *u != Unit::Day && !w.ends_with('s')) {
            return Self::hit(end, unit_range(shift(today, unit, dir)?, unit), Relative);
        }
        if let Some(wd) = weekday_word(w) {
            let cur = i64::from(today.weekday().num_days_from_monday());
            let target = i64::from(wd.num_days_from_monday());
            let offset = match dir {
                -1 => -((cur - target + 6).rem_euclid(7) + 1),
                1 => (target - cur + 6).rem_euclid(7) + 1,
                _ => target - cur,
            };
            return Self::hit(end, add_days(today, offset).map(|d| (d, d)), Relative);
        }
        if let Some((m, false)) = month_word(w) {
            let cur = today.month();
            let y = today.year();
            let y = match dir {
                -1 if m < cur => y,
                -1 => y - 1,
                1 if m > cur => y,
                1 => y + 1,
                _ => y,
            };
            return Self::hit(end, month_range(y, m), Relative);
        }
        if let Some(season) = season_word(w) {
            let y = this_season_year(season, today) + dir as i32;
            return Self::hit(end, season_occurrence(season, y), Relative);
        }
        if let Some((h, k)) = self.holiday(j) {
            let y = today.year();
            let date = match dir {
                -1 => holiday_date(h, y)
                    .filter(|d| *d < today)
                    .or_else(|| holiday_date(h, y - 1)),
                1 => holiday_date(h, y)
                    .filter(|d| *d > today)
                    .or_else(|| holiday_date(h, y + 1)),
                _ => holiday_date(h, y),
            };
            return Self::hit(k, date.map(|d| (d, d)), Relative);
        }
        None
    }

    /// "3 weeks ago", "a couple of months ago", "two years from now", "in a few days".
    fn counted(&self, i: usize, prep: Option<&str>) -> Option<Hit> {
        let (k, n, vague) = self.count(i)?;
        let unit = unit_word(self.word(k)?)?;
        let (sign, end) = if self.is(k + 1, &["ago"]) {
            (-1, k + 2)
        } else if self.is(k + 1, &["from"]) && self.is(k + 2, &["now", "today"]) {
            (1, k + 3)
        } else if prep == Some("in") && !self.is(k + 1, &["ago"]) {
            (1, k + 1)
        } else {
            return None;
        };
        let (near, far) = if vague {
            ((n - 1).max(1), n + 1)
        } else {
            (n, n)
        };
        let a = unit_range(shift(self.today, unit, sign * near)?, unit)?;
        let b = unit_range(shift(self.today, unit, sign * far)?, unit)?;
        Self::hit(
            end,
            Some((a.0.min(b.0), a.1.max(b.1))),
            TimeHintKind::Relative,
        )
    }

    /// "when did / when was ...", "what year", "which month", "how long ago", "since when".
    fn when_question(&self) -> Option<(usize, usize)> {
        const AUX: &[&str] = &[
            "did", "was", "were", "is", "are", "does", "do", "has", "have", "had", "will", "would",
            "could", "should",
        ];
        (0..self.toks.len()).find_map(|i| {
            let w = self.word(i)?;
            let end = match w {
                "when" if self.is(i + 1, AUX) => i + 2,
                "when's" => i + 1,
                "what" | "which" if self.is(i + 1, &["year", "month", "date", "day"]) => i + 2,
                "how" if self.is(i + 1, &["long"]) && self.is(i + 2, &["ago"]) => i + 3,
                "since" if self.is(i + 1, &["when"]) => i + 2,
                _ => return None,
            };
            Some((i, end))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thursday, 15 June 2023, noon UTC.
    fn reference() -> Timestamp {
        Utc.with_ymd_and_hms(2023, 6, 15, 12, 0, 0)
            .single()
            .expect("valid reference")
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    const A: TimeHintKind = TimeHintKind::Absolute;
    const R: TimeHintKind = TimeHintKind::Relative;

    /// (query, first day, last day, kind) against [`reference`].
    #[rustfmt::skip]
    const CASES: &[(&str, &str, &str, TimeHintKind)] = &[
        ("What did Caroline do in May 2023?", "2023-05-01", "2023-05-31", A),
        ("What happened May 2023?", "2023-05-01", "2023-05-31", A),
        ("WHAT HAPPENED IN MAY 2023?", "2023-05-01", "2023-05-31", A),
        ("What did we do on 8 May?", "2023-05-08", "2023-05-08", A),
        ("Where was she on 8 May 2023?", "2023-05-08", "2023-05-08", A),
        ("What happened on May 8, 2023?", "2023-05-08", "2023-05-08", A),
        ("Who called on May 8th?", "2023-05-08", "2023-05-08", A),
        ("What happened on the 8th of May?", "2023-05-08", "2023-05-08", A),
        ("What happened Dec 25, 2022?", "2022-12-25", "2022-12-25", A),
        ("What did we do in Jan. 2023?", "2023-01-01", "2023-01-31", A),
        ("What happened in March 2021?", "2021-03-01", "2021-03-31", A),
        ("What did I do in 2022?", "2022-01-01", "2022-12-31", A),
        ("Where did they live in 2019?", "2019-01-01", "2019-12-31", A),
        ("What happened in the year 2020?", "2020-01-01", "2020-12-31", A),
        ("What about 2022?", "2022-01-01", "2022-12-31", A),
        ("What happened 2022?", "2022-01-01", "2022-12-31", A),
        ("What happened on 13/05/2023?", "2023-05-13", "2023-05-13", A),
        ("What happened on 2023-05-08?", "2023-05-08", "2023-05-08", A),
        ("What happened on 05/08/2023?", "2023-05-08", "2023-05-08", A),
        ("What happened in 2023-05?", "2023-05-01", "2023-05-31", A),
        ("What music did they like in the 1990s?", "1990-01-01", "1999-12-31", A),
        ("What happened during the 90s?", "1990-01-01", "1999-12-31", A),
        ("What was I doing in the 2010s?", "2010-01-01", "2019-12-31", A),
        ("What happened in early 2022?", "2022-01-01", "2022-04-30", A),
        ("What did she do in mid-2022?", "2022-05-01", "2022-08-31", A),
        ("Any trips in late 2022?", "2022-09-01", "2022-12-31", A),
        ("What happened at the beginning of 2021?", "2021-01-01", "2021-04-30", A),
        ("What did they do in late May?", "2023-05-21", "2023-05-31", A),
        ("What happened during mid-May 2023?", "2023-05-11", "2023-05-20", A),
        ("What happened at the end of last year?", "2022-09-01", "2022-12-31", R),
        ("Where did they go in summer 2022?", "2022-06-01", "2022-08-31", A),
        ("What did he plant in the spring of 2021?", "2021-03-01", "2021-05-31", A),
        ("Who did she meet in the winter of 2022?", "2021-12-01", "2022-02-28", A),
        ("What happened in the autumn?", "2022-09-01", "2022-11-30", A),
        ("What gifts did they get for Christmas 2022?", "2022-12-25", "2022-12-25", A),
        ("What happened on Christmas Eve?", "2022-12-24", "2022-12-24", A),
        ("What happened on Halloween?", "2022-10-31", "2022-10-31", A),
        ("What happened on Valentine's Day?", "2023-02-14", "2023-02-14", A),
        ("What happened on New Year's Eve 2022?", "2022-12-31", "2022-12-31", A),
        ("What did we do last Christmas?", "2022-12-25", "2022-12-25", R),
        ("What did we do in June?", "2023-06-01", "2023-06-30", A),
        ("What did we do in July?", "2022-07-01", "2022-07-31", A),
        ("What has she done since March?", "2023-03-01", "2023-06-15", A),
        ("What have we done since July?", "2022-07-01", "2023-06-15", A),
        ("What happened since last week?", "2023-06-05", "2023-06-15", R),
        ("What happened before 2020?", "0001-01-01", "2019-12-31", A),
        ("What did they do after June 2021?", "2021-07-01", "2023-06-15", A),
        ("What did they say until 2021?", "0001-01-01", "2021-12-31", A),
        ("What happened between May and July 2023?", "2023-05-01", "2023-07-31", A),
        ("What happened between 2019 and 2021?", "2019-01-01", "2021-12-31", A),
        ("What happened from May 8 to May 12, 2023?", "2023-05-08", "2023-05-12", A),
        ("What did I do last Friday?", "2023-06-09", "2023-06-09", R),
        ("what happened last friday", "2023-06-09", "2023-06-09", R),
        ("Do I have plans next Friday?", "2023-06-16", "2023-06-16", R),
        ("What happens this Friday?", "2023-06-16", "2023-06-16", R),
        ("What did I do last Wednesday?", "2023-06-14", "2023-06-14", R),
        ("What did I do last Thursday?", "2023-06-08", "2023-06-08", R),
        ("What happened on Tuesday?", "2023-06-13", "2023-06-13", R),
        ("What happened last week?", "2023-06-05", "2023-06-11", R),
        ("What is planned this week?", "2023-06-12", "2023-06-18", R),
        ("What is planned next week?", "2023-06-19", "2023-06-25", R),
        ("What did I do earlier this week?", "2023-06-12", "2023-06-15", R),
        ("What did we discuss last month?", "2023-05-01", "2023-05-31", R),
        ("What happened this month?", "2023-06-01", "2023-06-30", R),
        ("What is due next month?", "2023-07-01", "2023-07-31", R),
        ("What did I read last year?", "2022-01-01", "2022-12-31", R),
        ("What are my goals this year?", "2023-01-01", "2023-12-31", R),
        ("Where will we go next year?", "2024-01-01", "2024-12-31", R),
        ("What did we do last summer?", "2022-06-01", "2022-08-31", R),
        ("Any plans this summer?", "2023-06-01", "2023-08-31", R),
        ("How cold was it last winter?", "2022-12-01", "2023-02-28", R),
        ("What did we do last weekend?", "2023-06-10", "2023-06-11", R),
        ("What happened this past weekend?", "2023-06-10", "2023-06-11", R),
        ("Any plans for this weekend?", "2023-06-17", "2023-06-18", R),
        ("What happened over the weekend?", "2023-06-10", "2023-06-11", R),
        ("What happened yesterday?", "2023-06-14", "2023-06-14", R),
        ("What did I eat today?", "2023-06-15", "2023-06-15", R),
        ("Where are we going tonight?", "2023-06-15", "2023-06-15", R),
        ("What did I do this morning?", "2023-06-15", "2023-06-15", R),
        ("What happened last night?", "2023-06-14", "2023-06-14", R),
        ("What happened the day before yesterday?", "2023-06-13", "2023-06-13", R),
        ("What's on tomorrow?", "2023-06-16", "2023-06-16", R),
        ("What did I do the other day?", "2023-06-08", "2023-06-14", R),
        ("What did she do two years ago?", "2021-01-01", "2021-12-31", R),
        ("What happened a year ago?", "2022-01-01", "2022-12-31", R),
        ("What happened 2 months ago?", "2023-04-01", "2023-04-30", R),
        ("Where was I 3 weeks ago?", "2023-05-22", "2023-05-28", R),
        ("What did we do a week ago?", "2023-06-05", "2023-06-11", R),
        ("What was the weather like 5 days ago?", "2023-06-10", "2023-06-10", R),
        ("What did we talk about a few days ago?", "2023-06-11", "2023-06-13", R),
        ("What did he say a couple of months ago?", "2023-03-01", "2023-05-31", R),
        ("Anything from several weeks ago?", "2023-05-08", "2023-05-28", R),
        ("What do I have in two weeks?", "2023-06-26", "2023-07-02", R),
        ("What is happening in 3 days?", "2023-06-18", "2023-06-18", R),
        ("What have I been reading recently?", "2023-05-16", "2023-06-15", R),
        ("What did I buy in the past week?", "2023-06-08", "2023-06-15", R),
        ("What happened in the past year?", "2022-06-15", "2023-06-15", R),
        ("How did my mood change over the last 3 months?", "2023-03-15", "2023-06-15", R),
        ("What did I do in the last few days?", "2023-06-12", "2023-06-15", R),
        ("What did we do over the past two years?", "2021-06-15", "2023-06-15", R),
        ("What did I do in the past couple of weeks?", "2023-06-01", "2023-06-15", R),
        ("When did Caroline go to the support group in May 2023?", "2023-05-01", "2023-05-31", A),
    ];

    /// Date questions without a date: a `When` hint at the reference, with the words matched.
    const WHEN: &[(&str, &str)] = &[
        ("When did Melanie paint a sunrise?", "When did"),
        ("When was the last time Caroline went hiking?", "When was"),
        ("when is Jon's birthday?", "when is"),
        ("What year did John start surfing?", "What year"),
        ("In which month did they adopt the dog?", "which month"),
        ("How long ago did they move to Berlin?", "How long ago"),
    ];

    /// Queries with no time expression at all.
    const NONE: &[&str] = &[
        "May I ask what you like?",
        "What may happen next?",
        "Who is the mayor of the town?",
        "They organised a march through the city.",
        "The march of time is relentless.",
        "I have 2000 books.",
        "In 2000 books were burned.",
        "There were 1999 people at the event.",
        "Is this the last one?",
        "Give me the next one.",
        "What does Caroline think about Sunday school?",
        "I'm in my 20s and love painting.",
        "She has been married for 5 years.",
        "He is 2 years old.",
        "Call me at 555-1234.",
        "What did April say to June?",
        "What do you think of the fall of Rome?",
        "How long have you been painting?",
        "What did she do when she was young?",
        "The weekend warriors won again.",
        "I ran 2000 meters in 10 minutes.",
    ];

    #[test]
    fn reference_is_a_thursday() {
        assert_eq!(reference().weekday(), Weekday::Thu);
        assert_eq!(date("2023-05-08").weekday(), Weekday::Mon);
    }

    #[test]
    fn query_table() {
        let mut failures = Vec::new();
        for &(query, from, to, kind) in CASES {
            let want = (day_start(date(from)), day_end(date(to)), kind);
            match parse_query_time(query, reference()) {
                Some(h) if (h.start, h.end, h.kind) == want => {}
                got => failures.push(format!(
                    "{query:?}: want {from}..{to} {kind:?}, got {got:?}"
                )),
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} failed:\n{}",
            failures.len(),
            CASES.len(),
            failures.join("\n")
        );
        assert!(CASES.len() >= 70);
    }

    #[test]
    fn when_questions() {
        let mut failures = Vec::new();
        for &(query, matched) in WHEN {
            match parse_query_time(query, reference()) {
                Some(h)
                    if h.kind == TimeHintKind::When
                        && h.start == reference()
                        && h.end == reference()
                        && h.matched == matched => {}
                got => failures.push(format!("{query:?}: want When {matched:?}, got {got:?}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn negatives() {
        let failures: Vec<String> = NONE
            .iter()
            .filter_map(|q| {
                parse_query_time(q, reference()).map(|h| format!("{q:?}: want None, got {h:?}"))
            })
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(NONE.len() >= 10);
    }

    #[test]
    fn matched_words_and_instants() {
        let h = parse_query_time("What did Caroline do in May 2023?", reference()).expect("hint");
        assert_eq!(h.matched, "in May 2023");
        assert_eq!(h.start.to_rfc3339(), "2023-05-01T00:00:00+00:00");
        assert_eq!(
            h.end,
            Utc.with_ymd_and_hms(2023, 5, 31, 23, 59, 59)
                .single()
                .expect("ts")
                + chrono::Duration::microseconds(999_999)
        );
        let h =
            parse_query_time("What happened the day before yesterday?", reference()).expect("hint");
        assert_eq!(h.matched, "the day before yesterday");
        let h = parse_query_time(
            "How did my mood change over the last 3 months?",
            reference(),
        )
        .expect("hint");
        assert_eq!(h.matched, "over the last 3 months");
    }

    /// Expected hints of one text: (first day, last day, matched words).
    type Expected = Vec<(&'static str, &'static str, &'static str)>;

    #[test]
    fn resolves_dates_inside_memories() {
        let at = |y, m, d| {
            Utc.with_ymd_and_hms(y, m, d, 9, 30, 0)
                .single()
                .expect("event time")
        };
        let ranges = |text: &str, event: Timestamp| -> Vec<(NaiveDate, NaiveDate, String)> {
            resolve_in_text(text, event)
                .into_iter()
                .map(|h| (h.start.date_naive(), h.end.date_naive(), h.matched))
                .collect()
        };
        let cases: Vec<(&str, Timestamp, Expected)> = vec![
            (
                "Let's meet next Friday at the cafe.",
                at(2023, 5, 8),
                vec![("2023-05-12", "2023-05-12", "next Friday")],
            ),
            (
                "We went camping last summer.",
                at(2023, 5, 10),
                vec![("2022-06-01", "2022-08-31", "last summer")],
            ),
            (
                "Yesterday I painted a sunrise.",
                at(2023, 5, 8),
                vec![("2023-05-07", "2023-05-07", "Yesterday")],
            ),
            (
                "I moved in 2019 and went to Paris last week; tomorrow I fly home.",
                at(2023, 5, 8),
                vec![
                    ("2019-01-01", "2019-12-31", "in 2019"),
                    ("2023-05-01", "2023-05-07", "last week"),
                    ("2023-05-09", "2023-05-09", "tomorrow"),
                ],
            ),
            (
                "My sister visits in two weeks.",
                at(2023, 5, 8),
                vec![("2023-05-22", "2023-05-28", "in two weeks")],
            ),
            (
                "We got married 3 years ago in Lisbon.",
                at(2023, 5, 8),
                vec![("2020-01-01", "2020-12-31", "3 years ago")],
            ),
            ("When did I say that?", at(2023, 5, 8), vec![]),
            ("I may go there with the mayor.", at(2023, 5, 8), vec![]),
        ];
        let mut failures = Vec::new();
        for (text, event, want) in cases {
            let want: Vec<(NaiveDate, NaiveDate, String)> = want
                .into_iter()
                .map(|(a, b, m)| (date(a), date(b), m.to_string()))
                .collect();
            let got = ranges(text, event);
            if got != want {
                failures.push(format!("{text:?}: want {want:?}, got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
