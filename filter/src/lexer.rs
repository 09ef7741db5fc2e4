//! Splits a filter expression into tokens, each with the 1-based character column it starts at.
//!
//! The token rules follow libpcap's scanner where it matters to users: a *word* is a run of
//! letters, digits, `_`, `.`, `:` and inner `-`, so `tcp-syn`, `10.0.0.0`, `2001:db8::1` and
//! `1000-2000` are single words (and `len-14` is one unknown word, exactly as in tcpdump: write
//! `len - 14`). A word with a single `:` is split around it, so `tcp[13:1]` reads as
//! `13`, `:`, `1` while IPv6 addresses (at least two colons) stay whole.

use crate::error::{ErrorKind, FilterError};

/// One token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tok<'a> {
    /// A keyword, number, address, range or name.
    Word(&'a str),
    /// A word written with a leading backslash (`\tcp`), which is never a keyword.
    Escaped(&'a str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Colon,
    Slash,
    /// `!` (negation).
    Bang,
    /// `&&`.
    AndAnd,
    /// `||`.
    OrOr,
    Amp,
    Pipe,
    Caret,
    Plus,
    Minus,
    Star,
    Percent,
    Shl,
    Shr,
    /// `=` or `==`.
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// End of the expression.
    End,
}

impl Tok<'_> {
    /// How the token is shown in error messages.
    pub(crate) fn describe(&self) -> String {
        let s = match self {
            Tok::Word(w) => return format!("`{w}`"),
            Tok::Escaped(w) => return format!("`\\{w}`"),
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Colon => ":",
            Tok::Slash => "/",
            Tok::Bang => "!",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            Tok::Amp => "&",
            Tok::Pipe => "|",
            Tok::Caret => "^",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Percent => "%",
            Tok::Shl => "<<",
            Tok::Shr => ">>",
            Tok::Eq => "=",
            Tok::Ne => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::End => return "the end of the expression".to_string(),
        };
        format!("`{s}`")
    }
}

/// A token and where it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) tok: Tok<'a>,
    /// 1-based character column.
    pub(crate) col: usize,
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

/// Tokenizes `src`. The last token is always [`Tok::End`], at the column after the last
/// character.
pub(crate) fn lex(src: &str) -> Result<Vec<Token<'_>>, FilterError> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(src.len(), |&(b, _)| b);
    let ch = |i: usize| chars.get(i).map(|&(_, c)| c);
    let mut toks = Vec::new();
    let mut i = 0;
    while let Some(c) = ch(i) {
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let word_starts_here = |j: usize| match ch(j) {
            Some(c) if is_word_start(c) => true,
            // An IPv6 address may start with `::`.
            Some(':') => ch(j + 1) == Some(':'),
            _ => false,
        };
        if word_starts_here(i) || (c == '\\' && word_starts_here(i + 1)) {
            let escaped = c == '\\';
            let start = if escaped { i + 1 } else { i };
            let mut end = start;
            while ch(end).is_some_and(is_word_char) {
                end += 1;
            }
            // A word never ends in `-` (libpcap's ID pattern): give trailing dashes back.
            while end > start + 1 && ch(end - 1) == Some('-') {
                end -= 1;
            }
            let word = &src[byte_at(start)..byte_at(end)];
            let word_col = start + 1;
            if escaped {
                toks.push(Token { tok: Tok::Escaped(word), col });
            } else if word.matches(':').count() == 1 {
                // `13:1` inside brackets: split around the colon.
                let (a, b) = word.split_once(':').unwrap_or((word, ""));
                if !a.is_empty() {
                    toks.push(Token { tok: Tok::Word(a), col: word_col });
                }
                let colon_col = word_col + a.chars().count();
                toks.push(Token { tok: Tok::Colon, col: colon_col });
                if !b.is_empty() {
                    toks.push(Token { tok: Tok::Word(b), col: colon_col + 1 });
                }
            } else {
                toks.push(Token { tok: Tok::Word(word), col: word_col });
            }
            i = end;
            continue;
        }
        let next = ch(i + 1);
        let (tok, len) = match (c, next) {
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('[', _) => (Tok::LBracket, 1),
            (']', _) => (Tok::RBracket, 1),
            (':', _) => (Tok::Colon, 1),
            ('/', _) => (Tok::Slash, 1),
            ('!', Some('=')) => (Tok::Ne, 2),
            ('!', _) => (Tok::Bang, 1),
            ('&', Some('&')) => (Tok::AndAnd, 2),
            ('&', _) => (Tok::Amp, 1),
            ('|', Some('|')) => (Tok::OrOr, 2),
            ('|', _) => (Tok::Pipe, 1),
            ('^', _) => (Tok::Caret, 1),
            ('+', _) => (Tok::Plus, 1),
            ('-', _) => (Tok::Minus, 1),
            ('*', _) => (Tok::Star, 1),
            ('%', _) => (Tok::Percent, 1),
            ('=', Some('=')) => (Tok::Eq, 2),
            ('=', _) => (Tok::Eq, 1),
            ('<', Some('<')) => (Tok::Shl, 2),
            ('<', Some('=')) => (Tok::Le, 2),
            ('<', _) => (Tok::Lt, 1),
            ('>', Some('>')) => (Tok::Shr, 2),
            ('>', Some('=')) => (Tok::Ge, 2),
            ('>', _) => (Tok::Gt, 1),
            _ => {
                return Err(FilterError::new(
                    src,
                    col,
                    ErrorKind::UnexpectedCharacter,
                    format!("unexpected character `{c}`"),
                ));
            }
        };
        toks.push(Token { tok, col });
        i += len;
    }
    toks.push(Token { tok: Tok::End, col: chars.len() + 1 });
    Ok(toks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Tok<'_>> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn words_keep_addresses_ranges_and_named_constants_whole() {
        assert_eq!(
            kinds("net 10.0.0.0/8 or ip6 host ::1"),
            vec![
                Tok::Word("net"),
                Tok::Word("10.0.0.0"),
                Tok::Slash,
                Tok::Word("8"),
                Tok::Word("or"),
                Tok::Word("ip6"),
                Tok::Word("host"),
                Tok::Word("::1"),
                Tok::End
            ]
        );
        assert_eq!(
            kinds("portrange 1000-2000&&tcp-syn"),
            vec![Tok::Word("portrange"), Tok::Word("1000-2000"), Tok::AndAnd, Tok::Word("tcp-syn"), Tok::End]
        );
        assert_eq!(kinds("2001:db8::/32")[0], Tok::Word("2001:db8::"));
    }

    #[test]
    fn single_colon_splits_and_operators_take_the_longest_match() {
        assert_eq!(
            kinds("icmp[0:2]!=0x0800"),
            vec![
                Tok::Word("icmp"),
                Tok::LBracket,
                Tok::Word("0"),
                Tok::Colon,
                Tok::Word("2"),
                Tok::RBracket,
                Tok::Ne,
                Tok::Word("0x0800"),
                Tok::End
            ]
        );
        assert_eq!(
            kinds("! a == b <= c << d >= e >> f || g | h"),
            vec![
                Tok::Bang,
                Tok::Word("a"),
                Tok::Eq,
                Tok::Word("b"),
                Tok::Le,
                Tok::Word("c"),
                Tok::Shl,
                Tok::Word("d"),
                Tok::Ge,
                Tok::Word("e"),
                Tok::Shr,
                Tok::Word("f"),
                Tok::OrOr,
                Tok::Word("g"),
                Tok::Pipe,
                Tok::Word("h"),
                Tok::End
            ]
        );
    }

    #[test]
    fn columns_count_characters_and_end_follows_the_text() {
        let t = lex("é tcp").unwrap_err();
        assert_eq!(t.column, 1);
        let t = lex("  tcp\\udp").unwrap();
        assert_eq!(t[0], Token { tok: Tok::Word("tcp"), col: 3 });
        assert_eq!(t[1], Token { tok: Tok::Escaped("udp"), col: 6 });
        assert_eq!(t[2], Token { tok: Tok::End, col: 10 });
        assert_eq!(lex("a-").unwrap()[1].tok, Tok::Minus);
    }
}
