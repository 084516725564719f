//! Reading a stripped Lua 5.4 dump (`string.dump(f, true)`, the format of
//! `ldump.c`) for fingerprints: the same bytes without the line numbers a
//! stripped dump still holds (`linedefined`, `lastlinedefined` of each
//! function), so that moving a function does not change its fingerprint,
//! and the string constants of every function in it (the globals it may
//! read are among them).

/// The dump without its line numbers, and its string constants; `None`
/// when the bytes are not a dump this reader knows.
pub fn normalize(dump: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let mut r = Reader { bytes: dump, at: 0, out: Vec::with_capacity(dump.len()), strings: Vec::new() };
    // Signature, version, format, LUAC_DATA (6 bytes), then the sizes of an
    // instruction, an integer and a number, then LUAC_INT and LUAC_NUM.
    let sizes = dump.get(12..15)?;
    if !dump.starts_with(b"\x1bLua") || dump.get(4) != Some(&0x54) {
        return None;
    }
    let (instruction, integer, number) = (sizes[0] as usize, sizes[1] as usize, sizes[2] as usize);
    r.copy(15 + integer + number + 1)?; // + the main function's upvalue count
    r.function(instruction, integer, number, 0)?;
    (r.at == dump.len()).then_some((r.out, r.strings))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    out: Vec<u8>,
    strings: Vec<Vec<u8>>,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let part = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(part)
    }

    fn copy(&mut self, n: usize) -> Option<()> {
        let end = self.at.checked_add(n)?;
        self.out.extend_from_slice(self.bytes.get(self.at..end)?);
        self.at = end;
        Some(())
    }

    /// `loadUnsigned`: 7 bits a byte, most significant first, the last
    /// byte marked by its high bit. Copied unless `skip`.
    fn size(&mut self, skip: bool) -> Option<usize> {
        let start = self.at;
        let mut x: usize = 0;
        loop {
            let b = *self.take(1)?.first()?;
            x = x.checked_mul(128)? | usize::from(b & 0x7f);
            if b & 0x80 != 0 {
                break;
            }
        }
        if !skip {
            self.out.extend_from_slice(&self.bytes[start..self.at]);
        }
        Some(x)
    }

    /// A string: its size plus one (0: none), then its bytes.
    fn string(&mut self) -> Option<Option<Vec<u8>>> {
        match self.size(false)? {
            0 => Some(None),
            n => {
                let start = self.at;
                self.copy(n - 1)?;
                Some(Some(self.bytes[start..self.at].to_vec()))
            }
        }
    }

    fn function(&mut self, instruction: usize, integer: usize, number: usize, depth: usize) -> Option<()> {
        if depth > 200 {
            return None;
        }
        self.string()?; // the source: none in a stripped dump
        self.size(true)?; // linedefined
        self.size(true)?; // lastlinedefined
        self.copy(3)?; // numparams, is_vararg, maxstacksize
        let code = self.size(false)?;
        self.copy(code.checked_mul(instruction)?)?;
        for _ in 0..self.size(false)? {
            let tag = *self.take(1)?.first()?;
            self.out.push(tag);
            match tag {
                // LUA_VNUMFLT, LUA_VNUMINT
                0x13 => self.copy(number)?,
                0x03 => self.copy(integer)?,
                // LUA_VSHRSTR, LUA_VLNGSTR
                0x04 | 0x14 => {
                    if let Some(s) = self.string()? {
                        self.strings.push(s);
                    }
                }
                // nil, false, true
                0x00 | 0x01 | 0x11 => {}
                _ => return None,
            }
        }
        let upvalues = self.size(false)?;
        self.copy(upvalues.checked_mul(3)?)?;
        for _ in 0..self.size(false)? {
            self.function(instruction, integer, number, depth + 1)?;
        }
        // The debug sections, all empty when stripped.
        for _ in 0..4 {
            if self.size(false)? != 0 {
                return None;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    fn dump(source: &str, name: &str) -> Vec<u8> {
        let lua = mlua::Lua::new();
        lua.load(source).exec().unwrap();
        let f: mlua::Function = lua.globals().get(name).unwrap();
        f.dump(true)
    }

    #[test]
    fn moving_a_function_keeps_its_normal_form_and_editing_it_does_not() {
        let f = "function f(x)\n  local g = function(y) return y .. 'long string constant, more than forty bytes long' end\n  return helper(x) + 1.5, true, g\nend\n";
        let (a, strings) = normalize(&dump(f, "f")).expect("a dump");
        let moved = format!("\n\n\n-- a comment\n{f}");
        assert_ne!(dump(f, "f"), dump(&moved, "f"), "a stripped dump holds line numbers");
        assert_eq!(normalize(&dump(&moved, "f")).unwrap().0, a);
        assert_ne!(normalize(&dump(&f.replace("+ 1.5", "+ 2.5"), "f")).unwrap().0, a);
        assert!(strings.contains(&b"helper".to_vec()), "{strings:?}");
        assert!(strings.iter().any(|s| s.starts_with(b"long string")), "{strings:?}");
    }

    #[test]
    fn what_is_not_a_dump_is_refused() {
        assert!(normalize(b"").is_none());
        assert!(normalize(b"\x1bLua\x53 not 5.4").is_none());
        let whole = dump("function f() return 1 end", "f");
        assert!(normalize(&whole[..whole.len() - 1]).is_none());
    }
}
