//! ganesha.conf read outside Ganesha: the `ganesha-ctdb` tool, the CTDB event script and
//! rpc.statd's callout find the store the running configuration names (its CTDB_RECOVERY
//! block) without flags repeated on every call.
//!
//! Ganesha's own grammar (src/config_parsing/conf_lex.l, conf_yacc.y): blocks `NAME { ... }`
//! nested at will, statements `key = value[, value ...];`, `#` to the end of the line,
//! `"..."` (backslash escapes) and `'...'` strings, `%include path` or `%include "path"` with
//! a relative path taken from the directory of the first file (`conf_dir`), block and key
//! names case-insensitive. What is not needed here (`%url`, `%dir`) is refused by name
//! rather than guessed at. Inside Ganesha the backend reads the block through Ganesha's own
//! parser (src/ganesha/config.rs); this reader only serves the tool.

use crate::config::RawConfig;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where Debian's nfs-ganesha reads its configuration.
pub const DEFAULT_PATH: &str = "/etc/ganesha/ganesha.conf";
/// Nested %include files, as Ganesha bounds them (a loop is an error, not a hang).
const MAX_INCLUDE_DEPTH: usize = 10;
/// Larger files are not a configuration (and are not read whole).
const MAX_FILE_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub name: String,
    /// Keys as written, values joined with ", " when a list.
    pub params: Vec<(String, String)>,
    pub blocks: Vec<Block>,
}

impl Block {
    /// The last value of `key` (case-insensitive); Ganesha refuses a key set twice in
    /// CTDB_RECOVERY, and this reader only looks.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct ConfError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    Semi,
    Eq,
    Comma,
}

fn lex(text: &str, file: &Path) -> Result<Vec<(Tok, usize)>, ConfError> {
    let err = |line: usize, message: String| ConfError {
        file: file.to_path_buf(),
        line,
        message,
    };
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '{' => out.push((Tok::Open, line)),
            '}' => out.push((Tok::Close, line)),
            ';' => out.push((Tok::Semi, line)),
            '=' => out.push((Tok::Eq, line)),
            ',' => out.push((Tok::Comma, line)),
            '"' | '\'' => {
                let start = line;
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(err(start, "a string is not closed".into())),
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => match chars.next() {
                            Some(e) => {
                                if e == '\n' {
                                    line += 1;
                                }
                                s.push(e)
                            }
                            None => return Err(err(start, "a string is not closed".into())),
                        },
                        Some(ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            s.push(ch)
                        }
                    }
                }
                out.push((Tok::Str(s), start));
            }
            c => {
                let mut w = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || "{};=,#\"'".contains(n) {
                        break;
                    }
                    w.push(n);
                    chars.next();
                }
                out.push((Tok::Word(w), line));
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    file: PathBuf,
    conf_dir: &'a Path,
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, line: usize, message: String) -> ConfError {
        ConfError {
            file: self.file.clone(),
            line,
            message,
        }
    }

    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or_else(|| self.toks.last())
            .map(|t| t.1)
            .unwrap_or(0)
    }

    /// Items up to the end of input (top level) or a closing brace (in a block).
    fn items(&mut self, in_block: bool) -> Result<Items, ConfError> {
        let mut params = Vec::new();
        let mut blocks = Vec::new();
        loop {
            let Some((tok, line)) = self.toks.get(self.pos).cloned() else {
                if in_block {
                    return Err(self.err(self.line(), "a block is not closed ('}' missing)".into()));
                }
                return Ok((params, blocks));
            };
            self.pos += 1;
            match tok {
                Tok::Close if in_block => return Ok((params, blocks)),
                Tok::Semi => {}
                Tok::Word(w) if w.eq_ignore_ascii_case("%include") => {
                    let path = match self.toks.get(self.pos).cloned() {
                        Some((Tok::Word(p) | Tok::Str(p), _)) => p,
                        _ => return Err(self.err(line, "%include without a file name".into())),
                    };
                    self.pos += 1;
                    let full = if Path::new(&path).is_absolute() {
                        PathBuf::from(&path)
                    } else {
                        self.conf_dir.join(&path)
                    };
                    if self.depth >= MAX_INCLUDE_DEPTH {
                        return Err(self.err(
                            line,
                            format!(
                                "%include {path}: more than {MAX_INCLUDE_DEPTH} nested includes \
                                 (an include loop?)"
                            ),
                        ));
                    }
                    let (p, b) = parse_file(&full, self.conf_dir, self.depth + 1)?;
                    params.extend(p);
                    blocks.extend(b);
                }
                Tok::Word(w) if w.starts_with('%') => {
                    return Err(self.err(
                        line,
                        format!("{w} is not read by ganesha-ctdb; give the store with flags"),
                    ));
                }
                Tok::Word(name) => match self.toks.get(self.pos).cloned() {
                    Some((Tok::Open, _)) => {
                        self.pos += 1;
                        let (p, b) = self.items(true)?;
                        blocks.push(Block {
                            name,
                            params: p,
                            blocks: b,
                        });
                    }
                    Some((Tok::Eq, _)) => {
                        self.pos += 1;
                        let mut values = Vec::new();
                        loop {
                            match self.toks.get(self.pos).cloned() {
                                Some((Tok::Word(v) | Tok::Str(v), _)) => {
                                    values.push(v);
                                    self.pos += 1;
                                }
                                Some((Tok::Comma, _)) => self.pos += 1,
                                Some((Tok::Semi, _)) => {
                                    self.pos += 1;
                                    break;
                                }
                                // Ganesha wants the ';'; a block's end without one is read as
                                // the end of the statement here (this reader only looks).
                                Some((Tok::Close, _)) | None => break,
                                Some((t, l)) => {
                                    return Err(self.err(
                                        l,
                                        format!("unexpected {t:?} in the value of {name}"),
                                    ))
                                }
                            }
                        }
                        params.push((name, values.join(", ")));
                    }
                    _ => {
                        return Err(self.err(
                            line,
                            format!("{name:?} is followed by neither '{{' nor '='"),
                        ))
                    }
                },
                t => return Err(self.err(line, format!("unexpected {t:?}"))),
            }
        }
    }
}

type Items = (Vec<(String, String)>, Vec<Block>);

fn parse_file(path: &Path, conf_dir: &Path, depth: usize) -> Result<Items, ConfError> {
    let err = |message: String| ConfError {
        file: path.to_path_buf(),
        line: 0,
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return Err(err(format!(
            "not a regular file of at most {MAX_FILE_BYTES} bytes"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&bytes);
    let toks = lex(&text, path)?;
    let mut p = Parser {
        toks,
        pos: 0,
        file: path.to_path_buf(),
        conf_dir,
        depth,
    };
    p.items(false)
}

/// The top-level blocks of `path` and everything it includes.
pub fn read(path: &Path) -> Result<Vec<Block>, ConfError> {
    let conf_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    parse_file(path, &conf_dir, 0).map(|(_, blocks)| blocks)
}

/// The CTDB_RECOVERY block's values, None if the file has none. Two blocks are an error, as
/// inside Ganesha (src/ganesha/config.rs refuses them).
pub fn ctdb_recovery(blocks: &[Block]) -> Result<Option<RawConfig>, String> {
    let found: Vec<&Block> = blocks
        .iter()
        .filter(|b| b.name.eq_ignore_ascii_case("CTDB_RECOVERY"))
        .collect();
    let b = match found.as_slice() {
        [] => return Ok(None),
        [b] => *b,
        _ => {
            return Err(format!(
                "{} CTDB_RECOVERY blocks; Ganesha refuses more than one",
                found.len()
            ))
        }
    };
    let get = |k: &str| b.get(k).map(str::to_owned);
    Ok(Some(RawConfig {
        store: get("Store"),
        dir: get("Dir"),
        node_id: get("Node_Id"),
        recovery_db: get("Recovery_DB"),
        grace_db: get("Grace_DB"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "gconf-{}-{}",
            std::process::id(),
            getrandom::u32().unwrap()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_block_is_found_among_what_a_real_configuration_has() {
        let d = tmp();
        write(
            &d,
            "ctdb.conf",
            "ctdb_recovery {\n  store = \"ctdb\"; # the cluster\n  Grace_DB = g.tdb;\n}\n",
        );
        let main = write(
            &d,
            "ganesha.conf",
            "# Debian's sample\nNFS_CORE_PARAM { Enable_NLM = true; Protocols = 3, 4; }\n\
             NFSv4 { RecoveryBackend = 'rados_cluster'; Grace_Period = 90; }\n\
             EXPORT { Export_Id = 1; Path = /srv/x; Pseudo = \"/x y\"; FSAL { Name = VFS; } }\n\
             %include \"ctdb.conf\"\n",
        );
        let blocks = read(&main).unwrap();
        let nfs4 = blocks.iter().find(|b| b.name == "NFSv4").unwrap();
        assert_eq!(nfs4.get("recoverybackend"), Some("rados_cluster"));
        let core = &blocks[0];
        assert_eq!(core.get("Protocols"), Some("3, 4"));
        let export = blocks.iter().find(|b| b.name == "EXPORT").unwrap();
        assert_eq!(export.get("Pseudo"), Some("/x y"));
        assert_eq!(export.blocks[0].get("Name"), Some("VFS"));
        let raw = ctdb_recovery(&blocks).unwrap().unwrap();
        assert_eq!(raw.store.as_deref(), Some("ctdb"));
        assert_eq!(raw.grace_db.as_deref(), Some("g.tdb"));
        assert_eq!(raw.recovery_db, None);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn errors_name_the_file_and_line_and_loops_end() {
        let d = tmp();
        let bad = write(&d, "bad.conf", "A {\n b = 1;\n\n C { d = \"x }\n");
        let e = read(&bad).unwrap_err();
        assert_eq!((e.file.clone(), e.line), (bad.clone(), 4), "{e}");
        let open = write(&d, "open.conf", "A {\n b = 1;\n");
        assert!(read(&open).unwrap_err().message.contains("not closed"));
        let looped = write(&d, "loop.conf", "%include loop.conf\n");
        assert!(read(&looped)
            .unwrap_err()
            .message
            .contains("nested includes"));
        let url = write(&d, "url.conf", "%url rados://pool/obj\n");
        assert!(read(&url).unwrap_err().message.contains("%url"));
        let twice = write(&d, "two.conf", "CTDB_RECOVERY {}\nctdb_recovery { }\n");
        assert!(ctdb_recovery(&read(&twice).unwrap()).is_err());
        let missing = d.join("missing.conf");
        assert_eq!(read(&missing).unwrap_err().file, missing);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn the_last_assignment_wins_as_in_ganesha() {
        let b = Block {
            name: "X".into(),
            params: vec![
                ("Store".into(), "dir".into()),
                ("STORE".into(), "ctdb".into()),
            ],
            blocks: Vec::new(),
        };
        assert_eq!(b.get("store"), Some("ctdb"));
    }
}

#[cfg(test)]
mod corpus {
    /// Every file under $GANESHA_CONF_CORPUS parses (a manual check against Ganesha's own
    /// config_samples; the shipped sample is checked always).
    #[test]
    fn real_configurations_parse() {
        let shipped =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ganesha-conf/ganesha.conf");
        super::read(&shipped).unwrap_or_else(|e| panic!("{e}"));
        let Some(dir) = std::env::var_os("GANESHA_CONF_CORPUS") else {
            return;
        };
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            match super::read(&p) {
                Ok(_) => n += 1,
                // An absolute %include of a file this machine does not have.
                Err(e) if e.file != p && e.line == 0 => eprintln!("skipped: {e}"),
                Err(e) => panic!("{e}"),
            }
        }
        eprintln!("{n} configurations parsed");
    }
}
