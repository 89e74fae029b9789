//! Per-bank in-memory inverted indexes for BM25 keyword search with MaxScore top-k pruning.
//!
//! FTS5's `bm25()` scores every row that matches any query word, so a word in most memories
//! costs time in proportion to the bank (11 of 15 ms of a recall at 100k memories). This index
//! ranks the same text with the same BM25 (FTS5's formula, constants and column weights) but
//! only scores documents that can still enter the top k: once k documents are held, a query
//! word whose best possible contribution cannot lift a document past the k-th is only looked
//! up, never walked.
//!
//! Like the vector index it is derived data: built from the rows on a bank's first keyword
//! search, kept in step by inserts, forgets and context rewrites (after their commits, under
//! the writer lock, so updates apply in commit order), and every hit is read back through SQL.
//! It covers the rows visible now and answers every keyword search: filtered ones (tags, fact
//! types, time ranges, metadata, `as_of`) score its candidates exhaustively within a posting
//! budget and let SQL apply the filter (`search.rs`); rows forgotten since an `as_of` instant
//! are tokenised and scored from their text there. FTS5 is no longer kept beside it: keeping it
//! in step doubled a retain's row writes at 1M rows in one bank.
//!
//! Statistics are per bank and over visible rows only.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use astrocyte_core::BankId;
use rusqlite::{params, Connection};

use crate::error::StoreResult;

mod snapshot;

pub(crate) use snapshot::store_snapshot;

/// BM25 term-frequency saturation (FTS5's constant).
const K1: f64 = 1.2;
/// BM25 length normalisation (FTS5's constant).
const B: f64 = 0.75;

/// Snapshot once unsaved changes are at least this share of the index (1/4), as vector
/// snapshots do.
const SNAPSHOT_SHARE: u64 = 4;

/// An index this large is worth snapshotting in the background as soon as it has none.
const SNAPSHOT_WHEN_MISSING_FROM: usize = 1_000;

/// Re-tokenising one changed row at open costs about as much as serialising this many
/// documents (measured: some 30 µs against well under 1 µs).
const RETOKENIZE_COST_RATIO: u64 = 40;

/// Term frequencies are kept in units of the context column's weight (0.5, see
/// `search::CONTEXT_WEIGHT`): a word in the memory's own text counts 2, in its context 1.
const TEXT_UNITS: u32 = 2;

/// A word's documents, by ascending document number, with its weighted frequency in each.
#[derive(Default)]
struct Postings {
    docs: Vec<u32>,
    /// Weighted frequency in half units (see [`TEXT_UNITS`]), saturated at 255.
    freqs: Vec<u8>,
    /// The largest of `freqs` ever added (removals leave it: an upper bound stays one).
    max_freq: u8,
}

/// The keyword index of one bank. Documents are numbered in the order they were added; a
/// rewritten or forgotten row leaves a dead number behind, dropped by the next compaction.
#[derive(Default)]
pub(crate) struct KeywordIndex {
    /// Stemmed word → its postings (index into `postings`).
    terms: HashMap<Box<str>, u32>,
    postings: Vec<Postings>,
    /// Row id of each document number.
    rowids: Vec<i64>,
    /// Tokens in each document (both columns); 0 marks a dead number.
    lengths: Vec<u16>,
    /// Live row id → its document number.
    numbers: HashMap<i64, u32>,
    /// Sum of `lengths` over live documents.
    live_length: u64,
    /// Smallest length ever added (a lower bound for score bounds).
    min_length: u16,
    /// Dead document numbers not yet compacted away.
    dead: usize,
    /// Changes (documents added, rewritten or removed) since the stored snapshot.
    pub(crate) unsaved: u64,
    /// Whether the database holds no usable snapshot of this index (never written, unreadable
    /// or deleted by a purge): the next open would rebuild it from every row.
    pub(crate) snapshot_missing: bool,
}

/// Lower-cased, diacritic-free, stemmed words, as FTS5's `porter unicode61 remove_diacritics 2`
/// tokenizer splits them: runs of letters and digits.
pub(crate) struct Tokenizer {
    stemmer: rust_stemmers::Stemmer,
    /// Surface form → stem, so building an index stems each distinct word once.
    cache: HashMap<Box<str>, Box<str>>,
    buffer: String,
}

impl Tokenizer {
    /// Distinct surface forms remembered; beyond it the cache starts over.
    const CACHE: usize = 1 << 18;

    pub(crate) fn new() -> Self {
        Tokenizer {
            stemmer: rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English),
            cache: HashMap::new(),
            buffer: String::new(),
        }
    }

    /// Calls `each` with every token of `text`, in order.
    pub(crate) fn tokens(&mut self, text: &str, mut each: impl FnMut(&str)) {
        for word in text.split(|c: char| !c.is_alphanumeric()) {
            if word.is_empty() {
                continue;
            }
            self.buffer.clear();
            for c in word.chars().flat_map(char::to_lowercase) {
                self.buffer.push(c);
            }
            if let Some(stem) = self.cache.get(self.buffer.as_str()) {
                each(stem);
                continue;
            }
            let stem = self.stem(&self.buffer);
            if self.cache.len() >= Self::CACHE {
                self.cache.clear();
            }
            self.cache
                .insert(self.buffer.clone().into_boxed_str(), stem.clone());
            each(&stem);
        }
    }

    fn stem(&self, lower: &str) -> Box<str> {
        let plain: String = if lower.is_ascii() {
            lower.to_string()
        } else {
            use unicode_normalization::char::is_combining_mark;
            use unicode_normalization::UnicodeNormalization;
            lower.nfd().filter(|c| !is_combining_mark(*c)).collect()
        };
        self.stemmer.stem(&plain).into()
    }
}

/// A text column without copying it (invalid UTF-8, which SQLite lets in, is replaced).
fn text_at<'a>(
    row: &'a rusqlite::Row<'_>,
    column: usize,
) -> StoreResult<Option<std::borrow::Cow<'a, str>>> {
    Ok(match row.get_ref(column)? {
        rusqlite::types::ValueRef::Text(bytes) => Some(String::from_utf8_lossy(bytes)),
        _ => None,
    })
}

/// Adds `units` to `term`'s count in a document's (short) list of counts.
fn bump(counts: &mut Vec<(u32, u32)>, term: u32, units: u32) {
    match counts.iter_mut().find(|(t, _)| *t == term) {
        Some((_, count)) => *count += units,
        None => counts.push((term, units)),
    }
}

/// `postings` with documents renumbered by `renumbered` (dead ones, `u32::MAX`, dropped), in
/// ascending new number, into `out` (cleared first).
fn renumber_postings(postings: &Postings, renumbered: &[u32], out: &mut Vec<(u32, u8)>) {
    out.clear();
    let mut sorted = true;
    for (doc, freq) in postings.docs.iter().zip(&postings.freqs) {
        let new = renumbered[*doc as usize];
        if new != u32::MAX {
            sorted &= out.last().is_none_or(|(last, _)| *last < new);
            out.push((new, *freq));
        }
    }
    if !sorted {
        out.sort_unstable_by_key(|(doc, _)| *doc);
    }
}

/// A row's document as it reaches the index: row id, own text, retrieval context.
pub(crate) type Document<'a> = (i64, &'a str, Option<&'a str>);

/// A document of a top-k heap: ordered so that the heap's top is the weakest.
#[derive(PartialEq)]
struct Held {
    score: f64,
    number: u32,
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    /// Lower score is "greater" (weaker, on top); among equals the later document is weaker.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.number.cmp(&other.number))
    }
}

/// A query word's cursor over its postings.
struct Cursor<'a> {
    postings: &'a Postings,
    idf: f64,
    bound: f64,
    at: usize,
}

impl Cursor<'_> {
    fn doc(&self) -> Option<u32> {
        self.postings.docs.get(self.at).copied()
    }

    /// Moves to the first document at or after `target` (galloping, then binary search).
    fn seek(&mut self, target: u32) {
        let docs = &self.postings.docs;
        if self.at >= docs.len() || docs[self.at] >= target {
            return;
        }
        let mut step = 1;
        let mut low = self.at;
        let mut high = self.at + 1;
        while high < docs.len() && docs[high] < target {
            low = high;
            step *= 2;
            high = (high + step).min(docs.len());
        }
        self.at = low + docs[low..high.min(docs.len())].partition_point(|d| *d < target);
    }
}

/// A bank's BM25 statistics: FTS5's formula and constants.
struct Weights {
    n: f64,
    average: f64,
}

impl Weights {
    /// A word's weight from the number of documents holding it. FTS5 floors the weight of
    /// words in over half the rows at a tiny positive value.
    fn idf(&self, frequency: usize) -> f64 {
        let frequency = frequency as f64;
        let idf = ((self.n - frequency + 0.5) / (frequency + 0.5)).ln();
        if idf > 0.0 {
            idf
        } else {
            1e-6
        }
    }

    fn norm(&self, length: u16) -> f64 {
        K1 * (1.0 - B + B * f64::from(length) / self.average)
    }

    /// One word's contribution to a document of `length` tokens holding it `freq` half units.
    fn term(&self, idf: f64, freq: u8, length: u16) -> f64 {
        let f = f64::from(freq) / TEXT_UNITS as f64;
        idf * f * (K1 + 1.0) / (f + self.norm(length))
    }
}

impl KeywordIndex {
    /// Loads the index of a bank's visible rows inside one read transaction: from its snapshot
    /// plus the rows changed since, or, when there is none or it is unusable, from every row.
    pub(crate) fn load(conn: &Connection, bank: &BankId) -> StoreResult<Self> {
        let started = std::time::Instant::now();
        let tx = conn.unchecked_transaction()?;
        let index = match snapshot::load_snapshot(&tx, bank)? {
            Some(index) => index,
            None => {
                let mut index = Self::build(&tx, bank)?;
                index.snapshot_missing = true;
                index
            }
        };
        tracing::debug!(bank = %bank, documents = index.numbers.len(), words = index.terms.len(), caught_up = index.unsaved, ms = started.elapsed().as_millis() as u64, "keyword index loaded");
        Ok(index)
    }

    /// Builds the index from every visible row of the bank (`conn` should be in a transaction).
    pub(crate) fn build(conn: &Connection, bank: &BankId) -> StoreResult<Self> {
        let mut index = KeywordIndex::default();
        let mut tokenizer = Tokenizer::new();
        let mut statement = conn.prepare(
            "SELECT rowid, search_text, index_context FROM memories
             WHERE bank_id = ?1 AND forgotten_at IS NULL ORDER BY rowid",
        )?;
        let mut rows = statement.query(params![bank.as_str()])?;
        while let Some(row) = rows.next()? {
            let rowid: i64 = row.get(0)?;
            let text = text_at(row, 1)?.unwrap_or_default();
            let context = text_at(row, 2)?;
            index.add(&mut tokenizer, rowid, &text, context.as_deref());
        }
        drop(rows);
        drop(statement);
        index.shrink();
        index.unsaved = 0;
        Ok(index)
    }

    /// Whether a snapshot should be written in the background after a change: as for vector
    /// snapshots, `snapshot_every` changes and at least a quarter of the index, so the work per
    /// change stays constant as the bank grows.
    pub(crate) fn wants_background_snapshot(&self, snapshot_every: u64) -> bool {
        let share = self.documents() as u64 / SNAPSHOT_SHARE;
        self.unsaved >= snapshot_every.max(share).max(1)
    }

    /// Whether a freshly loaded index should be snapshotted in the background: it was built
    /// from the rows and is large enough for that to be slow next time, or it caught up with
    /// many rows.
    pub(crate) fn wants_snapshot_after_load(&self, snapshot_every: u64) -> bool {
        self.wants_background_snapshot(snapshot_every)
            || (self.snapshot_missing && self.documents() >= SNAPSHOT_WHEN_MISSING_FROM)
    }

    /// Whether writing a snapshot on close pays for itself: there is none, or catching up
    /// with the unsaved changes at the next open would cost more than writing it now.
    pub(crate) fn worth_saving_on_close(&self) -> bool {
        (self.snapshot_missing && self.documents() > 0)
            || (self.unsaved > 0
                && self.unsaved.saturating_mul(RETOKENIZE_COST_RATIO) >= self.documents() as u64)
    }

    /// Documents in the index (live ones).
    pub(crate) fn documents(&self) -> usize {
        self.numbers.len()
    }

    /// Adds (or, when the row is present, replaces) one row's document.
    pub(crate) fn add(
        &mut self,
        tokenizer: &mut Tokenizer,
        rowid: i64,
        text: &str,
        context: Option<&str>,
    ) {
        self.remove(rowid);
        self.unsaved += 1;
        let Ok(number) = u32::try_from(self.rowids.len()) else {
            tracing::warn!(rowid, "keyword index full; row left out of keyword search");
            return;
        };
        let mut counts: Vec<(u32, u32)> = Vec::new();
        let mut length = 0usize;
        let terms = &mut self.terms;
        let postings = &mut self.postings;
        let mut term_of = |stem: &str| match terms.get(stem) {
            Some(term) => *term,
            None => {
                let term = postings.len() as u32;
                terms.insert(stem.into(), term);
                postings.push(Postings::default());
                term
            }
        };
        tokenizer.tokens(text, |stem| {
            length += 1;
            bump(&mut counts, term_of(stem), TEXT_UNITS);
        });
        if let Some(context) = context {
            tokenizer.tokens(context, |stem| {
                length += 1;
                bump(&mut counts, term_of(stem), 1);
            });
        }
        // 0 marks the dead; a document of no words is never found, so 1 is as good.
        let length = length.clamp(1, u16::MAX as usize) as u16;
        self.rowids.push(rowid);
        self.lengths.push(length);
        self.numbers.insert(rowid, number);
        self.live_length += u64::from(length);
        self.min_length = if self.numbers.len() == 1 {
            length
        } else {
            self.min_length.min(length)
        };
        for (term, units) in counts {
            let postings = &mut self.postings[term as usize];
            let freq = units.min(u8::MAX as u32) as u8;
            postings.docs.push(number);
            postings.freqs.push(freq);
            postings.max_freq = postings.max_freq.max(freq);
        }
    }

    /// Removes a row's document, if present.
    pub(crate) fn remove(&mut self, rowid: i64) {
        if let Some(number) = self.numbers.remove(&rowid) {
            let length = std::mem::take(&mut self.lengths[number as usize]);
            self.live_length -= u64::from(length);
            self.dead += 1;
            self.unsaved += 1;
        }
    }

    /// Drops dead document numbers once they are a fifth of all: they cost memory and
    /// scoring time, and they count in the document frequencies the weights come from.
    pub(crate) fn compact_if_worthwhile(&mut self) {
        if self.dead > 64 && self.dead * 5 > self.rowids.len() {
            self.compact();
        }
    }

    /// Drops dead numbers and renumbers the live documents in row-id order, the order a build
    /// from the rows gives them, so ties rank the same as after a rebuild.
    fn compact(&mut self) {
        let (renumbered, live) = self.renumbering();
        let mut kept_terms: HashMap<Box<str>, u32> = HashMap::with_capacity(self.terms.len());
        let mut kept_postings = Vec::with_capacity(self.postings.len());
        let mut pairs: Vec<(u32, u8)> = Vec::new();
        for (stem, term) in self.terms.drain() {
            let old = std::mem::take(&mut self.postings[term as usize]);
            renumber_postings(&old, &renumbered, &mut pairs);
            if pairs.is_empty() {
                continue;
            }
            let mut postings = Postings::default();
            for (doc, freq) in &pairs {
                postings.docs.push(*doc);
                postings.freqs.push(*freq);
                postings.max_freq = postings.max_freq.max(*freq);
            }
            kept_terms.insert(stem, kept_postings.len() as u32);
            kept_postings.push(postings);
        }
        self.terms = kept_terms;
        self.postings = kept_postings;
        self.lengths = live.iter().map(|old| self.lengths[*old as usize]).collect();
        self.rowids = live.iter().map(|old| self.rowids[*old as usize]).collect();
        self.numbers = self
            .rowids
            .iter()
            .enumerate()
            .map(|(number, rowid)| (*rowid, number as u32))
            .collect();
        self.min_length = self.lengths.iter().copied().min().unwrap_or(0);
        self.dead = 0;
        self.shrink();
    }

    /// The live documents' numbers in row-id order: old number → new (`u32::MAX` for dead
    /// ones), and new → old.
    fn renumbering(&self) -> (Vec<u32>, Vec<u32>) {
        let mut live: Vec<u32> = (0..self.rowids.len() as u32)
            .filter(|number| self.lengths[*number as usize] > 0)
            .collect();
        live.sort_unstable_by_key(|number| self.rowids[*number as usize]);
        let mut renumbered = vec![u32::MAX; self.rowids.len()];
        for (new, old) in live.iter().enumerate() {
            renumbered[*old as usize] = new as u32;
        }
        (renumbered, live)
    }

    fn shrink(&mut self) {
        for postings in &mut self.postings {
            postings.docs.shrink_to_fit();
            postings.freqs.shrink_to_fit();
        }
    }

    /// The `k` best rows for `words` (already stemmed; duplicates ignored) by BM25, best first,
    /// ties by document number (older first).
    pub(crate) fn top(&self, words: &[String], k: usize) -> Vec<(i64, f32)> {
        if k == 0 || self.numbers.is_empty() {
            return Vec::new();
        }
        let weights = self.weights();
        // Ordered by stem, not by term number: numbers depend on the order documents arrived
        // in, and the order scores are summed in must not (a snapshot load ranks exactly as a
        // rebuild).
        let terms = self.query_terms(words);
        let min_norm = weights.norm(self.min_length.max(1));
        let mut cursors: Vec<Cursor> = terms
            .iter()
            .map(|(_, term)| {
                let postings = &self.postings[*term as usize];
                // Dead numbers still count until compaction, which bounds the error to a fifth.
                let idf = weights.idf(postings.docs.len());
                let f = f64::from(postings.max_freq) / TEXT_UNITS as f64;
                let bound = idf * f * (K1 + 1.0) / (f + min_norm);
                Cursor {
                    postings,
                    idf,
                    bound,
                    at: 0,
                }
            })
            .collect();
        if cursors.is_empty() {
            return Vec::new();
        }
        // MaxScore: words by ascending bound; those before `essential` together cannot lift a
        // document past the k-th, so documents are only drawn from the others. The sort is
        // stable, so equal bounds keep the stems' order.
        cursors.sort_by(|a, b| a.bound.total_cmp(&b.bound));
        let mut prefix = Vec::with_capacity(cursors.len());
        let mut sum = 0.0;
        for cursor in &cursors {
            sum += cursor.bound;
            prefix.push(sum);
        }
        let mut heap: BinaryHeap<Held> = BinaryHeap::with_capacity(k + 1);
        let mut threshold = 0.0f64;
        let mut essential = 0usize;
        while let Some(doc) = cursors[essential..].iter().filter_map(Cursor::doc).min() {
            let length = self.lengths[doc as usize];
            let mut score = 0.0;
            for cursor in &mut cursors[essential..] {
                if cursor.doc() == Some(doc) {
                    if length > 0 {
                        score += weights.term(cursor.idf, cursor.postings.freqs[cursor.at], length);
                    }
                    cursor.at += 1;
                }
            }
            if length == 0 {
                continue;
            }
            for i in (0..essential).rev() {
                if score + prefix[i] <= threshold {
                    break;
                }
                let cursor = &mut cursors[i];
                cursor.seek(doc);
                if cursor.doc() == Some(doc) {
                    score += weights.term(cursor.idf, cursor.postings.freqs[cursor.at], length);
                }
            }
            if heap.len() < k || score > threshold {
                heap.push(Held { score, number: doc });
                if heap.len() > k {
                    heap.pop();
                }
                if heap.len() == k {
                    threshold = heap.peek().map_or(0.0, |held| held.score);
                    while essential < cursors.len() && prefix[essential] <= threshold {
                        essential += 1;
                    }
                    if essential == cursors.len() {
                        break;
                    }
                }
            }
        }
        let mut best = heap.into_vec();
        best.sort();
        best.into_iter()
            .map(|held| (self.rowids[held.number as usize], held.score as f32))
            .collect()
    }

    /// Every document holding one of `words` (stems), scored by BM25: for searches with a
    /// filter, which SQL applies to the candidates afterwards, best first. Scoring is
    /// exhaustive, so the candidates are bounded by `budget` postings (0: no bound): the
    /// rarest words are kept while their postings fit, and the frequent rest (near-zero
    /// weight, cost in proportion to the bank) is dropped; the rarest word is always kept, and
    /// when it alone is over the budget only its `budget` most recently indexed documents are
    /// scored. Returns the candidates, unsorted, and the stems kept.
    pub(crate) fn candidates(
        &self,
        words: &[String],
        budget: usize,
    ) -> (Vec<(i64, f32)>, Vec<String>) {
        let mut terms = self.query_terms(words);
        terms.sort_by_key(|(stem, term)| (self.postings[*term as usize].docs.len(), *stem));
        let mut kept: Vec<(&str, u32)> = Vec::with_capacity(terms.len());
        let mut total = 0usize;
        for (stem, term) in terms {
            let len = self.postings[term as usize].docs.len();
            if budget > 0 && !kept.is_empty() && total + len > budget {
                break;
            }
            total += len;
            kept.push((stem, term));
        }
        let min_doc = match kept.first() {
            Some((_, term)) if budget > 0 && total > budget => {
                let docs = &self.postings[*term as usize].docs;
                docs[docs.len() - budget]
            }
            _ => 0,
        };
        // Summed in stem order, as in `top`, so every document's score is reproducible.
        kept.sort_unstable();
        let weights = self.weights();
        let mut scores: HashMap<u32, f64> = HashMap::new();
        for (_, term) in &kept {
            let postings = &self.postings[*term as usize];
            let idf = weights.idf(postings.docs.len());
            let from = postings.docs.partition_point(|doc| *doc < min_doc);
            for (doc, freq) in postings.docs[from..].iter().zip(&postings.freqs[from..]) {
                let length = self.lengths[*doc as usize];
                if length > 0 {
                    *scores.entry(*doc).or_default() += weights.term(idf, *freq, length);
                }
            }
        }
        let scored = scores
            .into_iter()
            .map(|(doc, score)| (self.rowids[doc as usize], score as f32))
            .collect();
        // Words no document holds cost nothing here, and a row scored from outside may hold them.
        let mut stems: Vec<String> = kept.into_iter().map(|(stem, _)| stem.to_string()).collect();
        stems.extend(
            words
                .iter()
                .filter(|word| !self.terms.contains_key(word.as_str()))
                .cloned(),
        );
        stems.sort_unstable();
        stems.dedup();
        (scored, stems)
    }

    /// The BM25 score of a row not in the index (a memory forgotten since an `as_of` instant)
    /// for the stems [`KeywordIndex::candidates`] kept, with this index's statistics.
    pub(crate) fn score_outside(
        &self,
        tokenizer: &mut Tokenizer,
        kept: &[String],
        text: &str,
        context: Option<&str>,
    ) -> f32 {
        let weights = self.weights();
        // Counts by position in `kept`.
        let mut counts: Vec<(u32, u32)> = Vec::new();
        let mut length = 0usize;
        let mut count = |stem: &str, units: u32| {
            length += 1;
            if let Some(at) = kept.iter().position(|kept| kept == stem) {
                bump(&mut counts, at as u32, units);
            }
        };
        tokenizer.tokens(text, |stem| count(stem, TEXT_UNITS));
        if let Some(context) = context {
            tokenizer.tokens(context, |stem| count(stem, 1));
        }
        let length = length.clamp(1, u16::MAX as usize) as u16;
        counts.sort_unstable();
        let mut score = 0.0;
        for (at, units) in counts {
            let frequency = self
                .terms
                .get(kept[at as usize].as_str())
                .map_or(0, |term| self.postings[*term as usize].docs.len());
            let freq = units.min(u8::MAX as u32) as u8;
            score += weights.term(weights.idf(frequency), freq, length);
        }
        score as f32
    }

    /// The query's stems found in the index, with their term numbers, by stem, once each.
    fn query_terms<'w>(&self, words: &'w [String]) -> Vec<(&'w str, u32)> {
        let mut terms: Vec<(&str, u32)> = words
            .iter()
            .filter_map(|word| {
                self.terms
                    .get(word.as_str())
                    .map(|term| (word.as_str(), *term))
            })
            .collect();
        terms.sort_unstable();
        terms.dedup();
        terms
    }

    /// The index's BM25 statistics.
    fn weights(&self) -> Weights {
        let documents = self.numbers.len();
        Weights {
            n: documents as f64,
            average: (self.live_length as f64 / documents.max(1) as f64).max(1.0),
        }
    }

    /// The stems of a query's words, for [`KeywordIndex::top`].
    pub(crate) fn query_stems(words: &[String]) -> Vec<String> {
        let mut tokenizer = Tokenizer::new();
        let mut stems = Vec::new();
        for word in words {
            tokenizer.tokens(word, |stem| stems.push(stem.to_string()));
        }
        stems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(documents: &[(i64, &str, Option<&str>)]) -> KeywordIndex {
        let mut index = KeywordIndex::default();
        let mut tokenizer = Tokenizer::new();
        for (rowid, text, context) in documents {
            index.add(&mut tokenizer, *rowid, text, *context);
        }
        index
    }

    fn search(index: &KeywordIndex, query: &str, k: usize) -> Vec<i64> {
        let words: Vec<String> = query.split_whitespace().map(str::to_string).collect();
        index
            .top(&KeywordIndex::query_stems(&words), k)
            .into_iter()
            .map(|(rowid, _)| rowid)
            .collect()
    }

    #[test]
    fn tokens_are_lowercased_stemmed_and_free_of_diacritics() {
        let mut tokenizer = Tokenizer::new();
        let mut tokens = Vec::new();
        tokenizer.tokens("Running CAFÉ, naïve-runners' 42x", |t| {
            tokens.push(t.to_string())
        });
        assert_eq!(tokens, vec!["run", "cafe", "naiv", "runner", "42x"]);
    }

    /// The pruned search returns exactly what scoring every document would, across many
    /// random queries, k values and removals.
    #[test]
    fn pruning_never_changes_the_top_k() {
        let words = [
            "alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa",
        ];
        let mut state = 7u64;
        let mut next = move |n: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as usize) % n
        };
        let mut documents = Vec::new();
        for rowid in 1..=400i64 {
            let length = 1 + next(12);
            // Skewed: low-numbered words are common.
            let text: Vec<&str> = (0..length)
                .map(|_| words[next(words.len()).min(next(words.len()))])
                .collect();
            let context: Vec<&str> = (0..next(4)).map(|_| words[next(words.len())]).collect();
            documents.push((rowid, text.join(" "), context.join(" ")));
        }
        let mut built = KeywordIndex::default();
        let mut tokenizer = Tokenizer::new();
        for (rowid, text, context) in &documents {
            built.add(&mut tokenizer, *rowid, text, Some(context));
        }
        for rowid in (1..=400).step_by(7) {
            built.remove(rowid);
        }
        for round in 0..200 {
            let query: Vec<String> = (0..1 + next(4))
                .map(|_| words[next(words.len())].to_string())
                .collect();
            let k = 1 + next(30);
            let pruned = built.top(&query, k);
            let everything = built.top(&query, built.rowids.len());
            assert_eq!(pruned.len(), k.min(everything.len()), "round {round}");
            for (got, want) in pruned.iter().zip(&everything) {
                assert!(
                    (got.1 - want.1).abs() < 1e-5,
                    "round {round} {query:?} k {k}: {pruned:?} vs {everything:?}"
                );
            }
            assert!(
                everything.iter().all(|(rowid, _)| rowid % 7 != 1),
                "removed rows are never found"
            );
        }
    }

    fn stems(query: &str) -> Vec<String> {
        let words: Vec<String> = query.split_whitespace().map(str::to_string).collect();
        KeywordIndex::query_stems(&words)
    }

    #[test]
    fn candidates_keep_the_rarest_words_within_the_budget() {
        // Row 1 holds the rare word; rows 1..=10 the common one.
        let documents: Vec<(i64, String)> = (1..=10)
            .map(|i| {
                (
                    i,
                    if i == 1 {
                        "common rare"
                    } else {
                        "common filler"
                    }
                    .to_string(),
                )
            })
            .collect();
        let documents: Vec<(i64, &str, Option<&str>)> = documents
            .iter()
            .map(|(i, t)| (*i, t.as_str(), None))
            .collect();
        let index = index(&documents);
        let rows = |query: &str, budget| {
            let (mut scored, kept) = index.candidates(&stems(query), budget);
            scored.sort_by_key(|(rowid, _)| *rowid);
            (
                scored
                    .into_iter()
                    .map(|(rowid, _)| rowid)
                    .collect::<Vec<_>>(),
                kept,
            )
        };
        assert_eq!(
            rows("common rare absent", 5),
            (vec![1], vec!["absent".into(), "rare".into()]),
            "the frequent word does not fit"
        );
        assert_eq!(
            rows("common rare", 11),
            ((1..=10).collect(), vec!["common".into(), "rare".into()]),
            "rarest first while it fits"
        );
        assert_eq!(
            rows("common rare", 0).0,
            (1..=10).collect::<Vec<_>>(),
            "budget 0 keeps all"
        );
        assert_eq!(
            rows("common absent", 4),
            ((7..=10).collect(), vec!["absent".into(), "common".into()]),
            "over the budget alone, the rarest word's newest documents"
        );
        assert_eq!(
            rows("absent", 4),
            (vec![], vec!["absent".into()]),
            "a word no document holds is kept for rows scored from outside"
        );
    }

    /// Exhaustive candidates score as the pruned top k does, and a row scored from outside
    /// the index as the same text inside it.
    #[test]
    fn candidates_and_outside_rows_score_as_the_top_k() {
        let index = index(&[
            (1, "the lighthouse keeper", Some("May 2023")),
            (2, "keeper of bees", Some("lighthouse tour")),
            (3, "bees and honey in May", None),
            (4, "an unrelated memory", None),
        ]);
        let query = stems("lighthouse keeper may bees");
        let mut top = index.top(&query, 10);
        top.sort_by_key(|(rowid, _)| *rowid);
        let (mut all, kept) = index.candidates(&query, 0);
        all.sort_by_key(|(rowid, _)| *rowid);
        assert_eq!(all, top);
        let mut tokenizer = Tokenizer::new();
        let outside = index.score_outside(
            &mut tokenizer,
            &kept,
            "keeper of bees",
            Some("lighthouse tour"),
        );
        assert_eq!(outside, top[1].1, "row 2's text scored from outside");
        assert_eq!(
            index.score_outside(&mut tokenizer, &kept, "nothing shared", None),
            0.0
        );
    }

    #[test]
    fn bm25_prefers_rare_words_own_text_and_short_documents() {
        let built = index(&[
            (1, "cat dog", None),
            (2, "cat", None),
            (3, "dog bird", None),
            (4, "fish", Some("bird")),
            (5, "cat cat cat dog mouse horse cow pig", None),
        ]);
        assert_eq!(
            search(&built, "bird", 5),
            vec![3, 4],
            "own text beats context"
        );
        assert_eq!(search(&built, "cat", 1), vec![2], "the shorter document");
        assert_eq!(
            search(&built, "bird cat", 1)[0],
            3,
            "the rarer word weighs more"
        );
        assert!(search(&built, "absent", 5).is_empty());
    }

    #[test]
    fn rewrites_removals_and_compaction_keep_the_index_exact() {
        let mut built = index(&[(1, "apple pie", None), (2, "banana bread", None)]);
        let mut tokenizer = Tokenizer::new();
        built.add(&mut tokenizer, 1, "cherry tart", Some("apple"));
        assert_eq!(
            search(&built, "apple", 5),
            vec![1],
            "the context still finds it"
        );
        assert_eq!(search(&built, "pie", 5), Vec::<i64>::new(), "old text gone");
        for rowid in 3..200 {
            built.add(&mut tokenizer, rowid, "filler words", None);
        }
        for rowid in 3..150 {
            built.remove(rowid);
        }
        built.compact_if_worthwhile();
        assert_eq!(built.dead, 0, "compacted");
        assert_eq!(built.rowids.len(), 52);
        assert_eq!(search(&built, "cherry", 5), vec![1]);
        assert_eq!(search(&built, "banana", 5), vec![2]);
        assert_eq!(search(&built, "filler", 100).len(), 50);
    }
}
