//! A small eBPF assembler: the instructions the XDP filter uses, encoded as the kernel
//! reads them (struct bpf_insn, little-endian hosts), with forward jumps to labels
//! that are patched when the label is placed.
//!
//! Writing the dozen-odd instruction forms here keeps the build free of clang and of
//! a BPF loader crate (docs/decisions.md, "The XDP program: assembled in Rust").

/// Registers r0..r10 (r10: the read-only frame pointer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg(pub u8);

pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R5: Reg = Reg(5);
pub const R6: Reg = Reg(6);
pub const R7: Reg = Reg(7);
pub const R8: Reg = Reg(8);
pub const R9: Reg = Reg(9);
pub const R10: Reg = Reg(10);

/// Instruction classes, sizes, modes and operations (linux/bpf_common.h, linux/bpf.h).
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const MEM: u8 = 0x60;
const IMM: u8 = 0x00;
const K: u8 = 0x00;
const X: u8 = 0x08;
const ADD: u8 = 0x00;
const MOV: u8 = 0xb0;
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JGT: u8 = 0x20;
const JNE: u8 = 0x50;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
/// src_reg of a 64-bit immediate load that names a map by file descriptor.
const PSEUDO_MAP_FD: u8 = 1;

/// Access sizes.
#[derive(Clone, Copy, Debug)]
pub enum Size {
    B = 0x10,
    H = 0x08,
    W = 0x00,
    DW = 0x18,
}

/// A place in the program that jumps refer to before it is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// Jump conditions used by the filter.
#[derive(Clone, Copy, Debug)]
pub enum Cond {
    Eq,
    Ne,
    /// Unsigned greater-than.
    Gt,
}

impl Cond {
    fn op(self) -> u8 {
        match self {
            Cond::Eq => JEQ,
            Cond::Ne => JNE,
            Cond::Gt => JGT,
        }
    }
}

/// A program being assembled.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<u64>,
    /// Where each label is placed (instruction index), once it is.
    labels: Vec<Option<usize>>,
    /// (instruction index, label) of jumps waiting for their label.
    fixups: Vec<(usize, Label)>,
}

/// Why a program could not be assembled: a bug in the program's generator.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    #[error("label {0} used but never placed")]
    Unplaced(usize),
    #[error("label {0} placed twice")]
    PlacedTwice(usize),
    #[error("jump at {at} to label {label} is not forward or too far")]
    BadJump { at: usize, label: usize },
}

fn encode(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst.0 & 0x0f) << 8)
        | (u64::from(src.0 & 0x0f) << 12)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    fn push(&mut self, insn: u64) {
        self.insns.push(insn);
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `l` at the next instruction.
    pub fn place(&mut self, l: Label) -> Result<(), AsmError> {
        match self.labels.get_mut(l.0) {
            Some(slot @ None) => {
                *slot = Some(self.insns.len());
                Ok(())
            }
            _ => Err(AsmError::PlacedTwice(l.0)),
        }
    }

    /// dst = imm (64-bit move of a sign-extended 32-bit immediate).
    pub fn mov_imm(&mut self, dst: Reg, imm: i32) {
        self.push(encode(ALU64 | MOV | K, dst, R0, 0, imm));
    }

    pub fn mov_reg(&mut self, dst: Reg, src: Reg) {
        self.push(encode(ALU64 | MOV | X, dst, src, 0, 0));
    }

    pub fn add_imm(&mut self, dst: Reg, imm: i32) {
        self.push(encode(ALU64 | ADD | K, dst, R0, 0, imm));
    }

    /// dst = *(size *)(src + off)
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) {
        self.push(encode(LDX | MEM | size as u8, dst, src, off, 0));
    }

    /// *(size *)(dst + off) = src
    pub fn store_reg(&mut self, size: Size, dst: Reg, off: i16, src: Reg) {
        self.push(encode(STX | MEM | size as u8, dst, src, off, 0));
    }

    /// *(size *)(dst + off) = imm
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) {
        self.push(encode(ST | MEM | size as u8, dst, R0, off, imm));
    }

    /// dst = the map whose descriptor is `fd` (a two-slot 64-bit immediate load).
    pub fn load_map_fd(&mut self, dst: Reg, fd: i32) {
        self.push(encode(
            LD | IMM | Size::DW as u8,
            dst,
            Reg(PSEUDO_MAP_FD),
            0,
            fd,
        ));
        self.push(0);
    }

    /// if (dst cond imm) goto l
    pub fn jump_imm(&mut self, cond: Cond, dst: Reg, imm: i32, l: Label) {
        self.fixups.push((self.insns.len(), l));
        self.push(encode(JMP | cond.op() | K, dst, R0, 0, imm));
    }

    /// if (dst cond src) goto l
    pub fn jump_reg(&mut self, cond: Cond, dst: Reg, src: Reg, l: Label) {
        self.fixups.push((self.insns.len(), l));
        self.push(encode(JMP | cond.op() | X, dst, src, 0, 0));
    }

    pub fn goto(&mut self, l: Label) {
        self.fixups.push((self.insns.len(), l));
        self.push(encode(JMP | JA, R0, R0, 0, 0));
    }

    /// Calls kernel helper number `helper` (arguments r1..r5, result r0).
    pub fn call(&mut self, helper: i32) {
        self.push(encode(JMP | CALL, R0, R0, 0, helper));
    }

    pub fn exit(&mut self) {
        self.push(encode(JMP | EXIT, R0, R0, 0, 0));
    }

    /// The finished program: every jump resolved to its label.
    pub fn finish(mut self) -> Result<Vec<u64>, AsmError> {
        for &(at, l) in &self.fixups {
            let target = self
                .labels
                .get(l.0)
                .copied()
                .flatten()
                .ok_or(AsmError::Unplaced(l.0))?;
            let off = target
                .checked_sub(at + 1)
                .and_then(|o| i16::try_from(o).ok())
                .ok_or(AsmError::BadJump { at, label: l.0 })?;
            let insn = self
                .insns
                .get_mut(at)
                .ok_or(AsmError::BadJump { at, label: l.0 })?;
            *insn = (*insn & !(0xffff << 16)) | (u64::from(off as u16) << 16);
        }
        Ok(self.insns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_the_kernel_reads_struct_bpf_insn() {
        let mut a = Asm::new();
        a.mov_imm(R0, 2); // b7 00 0000 02000000
        a.load(Size::W, R2, R1, 4); // 61 12 0400 00000000
        a.load_map_fd(R1, 7); // 18 11 0000 07000000, then 0
        a.exit(); // 95
        let p = a.finish().unwrap();
        assert_eq!(
            p,
            vec![
                0x0000_0002_0000_00b7,
                0x0000_0000_0004_1261,
                0x0000_0007_0000_1118,
                0,
                0x95
            ]
        );
    }

    #[test]
    fn forward_jumps_are_patched_and_bad_labels_refused() {
        let mut a = Asm::new();
        let out = a.label();
        a.jump_imm(Cond::Eq, R5, 8, out);
        a.mov_imm(R0, 1);
        a.mov_imm(R0, 1);
        a.place(out).unwrap();
        a.exit();
        let p = a.finish().unwrap();
        assert_eq!((p[0] >> 16) & 0xffff, 2, "skips the two moves");
        assert_eq!(p[0] & 0xff, 0x15, "jeq imm");

        let mut a = Asm::new();
        let l = a.label();
        a.goto(l);
        assert_eq!(a.finish(), Err(AsmError::Unplaced(0)));
        let mut a = Asm::new();
        let l = a.label();
        a.place(l).unwrap();
        assert_eq!(a.place(l), Err(AsmError::PlacedTwice(0)));
        a.goto(l);
        assert!(matches!(a.finish(), Err(AsmError::BadJump { .. })));
    }
}
