//! Splits retained content into chunks: sentence packing for text, paragraphs then sentences
//! for documents, one chunk per turn for conversations. Sizes are in characters, not bytes, so
//! multi-byte text is never cut inside a character.

use crate::model::ContentType;

/// Chunking parameters.
#[derive(Debug, Clone, Copy)]
pub struct ChunkParams {
    /// Largest chunk in characters.
    pub max_chars: usize,
    /// Characters of the previous chunk repeated at the start of the next, so a fact that
    /// straddles a boundary is still whole in one chunk.
    pub overlap_chars: usize,
}

impl Default for ChunkParams {
    fn default() -> Self {
        ChunkParams {
            max_chars: 512,
            overlap_chars: 50,
        }
    }
}

/// Splits `content` into chunks according to its type. Never returns an empty chunk; returns
/// no chunks only for blank content.
pub fn chunk(content: &str, content_type: ContentType, params: ChunkParams) -> Vec<String> {
    let content = content.trim();
    if content.is_empty() {
        return Vec::new();
    }
    match content_type {
        ContentType::Text => pack_sentences(&sentences(content), params),
        ContentType::Document => content
            .split("\n\n")
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .flat_map(|paragraph| pack_sentences(&sentences(paragraph), params))
            .collect(),
        ContentType::Conversation => turns(content)
            .into_iter()
            .flat_map(|turn| pack_sentences(&sentences(&turn), params))
            .collect(),
    }
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Splits after `.`, `!` or `?` followed by whitespace, and at line breaks.
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            push_trimmed(&mut out, &mut current);
            continue;
        }
        current.push(c);
        if matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|n| n.is_whitespace()) {
            push_trimmed(&mut out, &mut current);
        }
    }
    push_trimmed(&mut out, &mut current);
    out
}

fn push_trimmed(out: &mut Vec<String>, current: &mut String) {
    let trimmed = current.trim();
    if !trimmed.is_empty() {
        out.push(trimmed.to_string());
    }
    current.clear();
}

/// Cuts a too-long piece at whitespace (or mid-word when there is none) into `max`-char parts.
fn hard_split(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_string();
        while char_len(&word) > max {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            let head: String = word.chars().take(max).collect();
            word = word.chars().skip(max).collect();
            out.push(head);
        }
        let extra = if current.is_empty() { 0 } else { 1 };
        if char_len(&current) + extra + char_len(&word) > max {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&word);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The last `overlap` characters of `chunk`, starting at a word boundary.
fn tail(chunk: &str, overlap: usize) -> &str {
    let n = char_len(chunk);
    if overlap == 0 || n <= overlap {
        return if overlap == 0 { "" } else { chunk };
    }
    let start = chunk
        .char_indices()
        .nth(n - overlap)
        .map(|(i, _)| i)
        .unwrap_or(0);
    let rest = &chunk[start..];
    match rest.find(char::is_whitespace) {
        Some(i) => rest[i..].trim_start(),
        None => rest,
    }
}

fn pack_sentences(sentences: &[String], params: ChunkParams) -> Vec<String> {
    let max = params.max_chars.max(1);
    // Overlap larger than a chunk would make no progress; keep it well inside.
    let overlap = params.overlap_chars.min(max / 2);
    // A piece must fit after the carried-over overlap and its joining space.
    let piece_max = max.saturating_sub(overlap + 1).max(1);
    let pieces: Vec<String> = sentences
        .iter()
        .flat_map(|s| {
            if char_len(s) > piece_max {
                hard_split(s, piece_max)
            } else {
                vec![s.clone()]
            }
        })
        .collect();
    let mut chunks: Vec<String> = Vec::new();
    let mut current = String::new();
    for piece in pieces {
        let extra = if current.is_empty() { 0 } else { 1 };
        if !current.is_empty() && char_len(&current) + extra + char_len(&piece) > max {
            let previous = std::mem::take(&mut current);
            current = tail(&previous, overlap).to_string();
            chunks.push(previous);
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&piece);
    }
    if !current.trim().is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Groups lines into turns: a line that starts with `Speaker:` opens a turn, other lines
/// continue the current one. Content with no speaker lines is one turn per non-empty line.
fn turns(content: &str) -> Vec<String> {
    let is_turn_start = |line: &str| {
        line.split_once(':').is_some_and(|(speaker, rest)| {
            let speaker = speaker.trim();
            !speaker.is_empty()
                && char_len(speaker) <= 64
                && !speaker.contains("://")
                && (rest.is_empty() || rest.starts_with(char::is_whitespace))
        })
    };
    let mut out: Vec<String> = Vec::new();
    for line in content.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match out.last_mut() {
            Some(last) if !is_turn_start(line) => {
                last.push(' ');
                last.push_str(line);
            }
            _ => out.push(line.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_chunks(s: &str) -> Vec<String> {
        chunk(s, ContentType::Text, ChunkParams::default())
    }

    #[test]
    fn short_text_is_one_chunk_verbatim() {
        assert_eq!(
            text_chunks("  Miso is the cat's name.  "),
            vec!["Miso is the cat's name."]
        );
        assert!(text_chunks("   ").is_empty());
    }

    #[test]
    fn long_text_respects_max_and_overlaps() {
        let sentence = "The quick brown fox jumps over the lazy dog near the river bank today.";
        let text = vec![sentence; 40].join(" ");
        let chunks = text_chunks(&text);
        assert!(chunks.len() > 4);
        for c in &chunks {
            assert!(c.chars().count() <= 512, "chunk too long: {}", c.len());
        }
        // Each chunk after the first starts with the end of the previous one.
        for pair in chunks.windows(2) {
            let head: String = pair[1].chars().take(20).collect();
            assert!(pair[0].contains(head.trim()), "no overlap between chunks");
        }
    }

    #[test]
    fn a_single_huge_word_is_cut_without_panicking_on_multibyte_text() {
        let text = "é".repeat(2000);
        let chunks = text_chunks(&text);
        assert!(chunks.iter().all(|c| c.chars().count() <= 512));
        assert!(chunks.iter().map(|c| c.chars().count()).sum::<usize>() >= 2000);
    }

    #[test]
    fn conversation_is_split_by_turn() {
        let convo =
            "Alice: I adopted a cat.\nShe is called Miso.\nBob: Nice! What colour?\nAlice: Grey.";
        let chunks = chunk(convo, ContentType::Conversation, ChunkParams::default());
        assert_eq!(
            chunks,
            vec![
                "Alice: I adopted a cat. She is called Miso.",
                "Bob: Nice! What colour?",
                "Alice: Grey."
            ]
        );
    }

    #[test]
    fn document_is_split_by_paragraph() {
        let doc = "First paragraph here.\n\nSecond paragraph there.";
        let chunks = chunk(doc, ContentType::Document, ChunkParams::default());
        assert_eq!(
            chunks,
            vec!["First paragraph here.", "Second paragraph there."]
        );
    }
}
