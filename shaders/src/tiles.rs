//! Tile sizes of matmul.wgsl's tiled kernel: its pipeline-overridable (`override`) constants.
//! (The DIRECT kernel for CPU adapters has fixed sizes.)

/// A workgroup of `wx × wy` threads computes `wy·tm × wx·tn` outputs of C, each thread `tm × tn`
/// of them in registers; K advances `bk` at a time through workgroup memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulTiles {
    pub tm: u32,
    pub tn: u32,
    pub wx: u32,
    pub wy: u32,
    pub bk: u32,
}

impl MatmulTiles {
    /// The shader's defaults, which every WebGPU device runs: 64×64 outputs per workgroup of
    /// 16×16 threads, 4×4 each, K by 16.
    pub const PORTABLE: MatmulTiles = MatmulTiles {
        tm: 4,
        tn: 4,
        wx: 16,
        wy: 16,
        bk: 16,
    };

    /// 128×128 per workgroup of 16×16 threads, 8×8 each, K by 8: the classic SGEMM blocking
    /// for GPUs with large register files.
    pub const LARGE: MatmulTiles = MatmulTiles {
        tm: 8,
        tn: 8,
        wx: 16,
        wy: 16,
        bk: 8,
    };

    /// 64×64 per workgroup of 16×8 threads, 8×4 each, K by 16.
    pub const MEDIUM: MatmulTiles = MatmulTiles {
        tm: 8,
        tn: 4,
        wx: 16,
        wy: 8,
        bk: 16,
    };

    /// Every configuration the engine may build (each is validated with naga in the tests).
    pub const ALL: [MatmulTiles; 3] = [Self::PORTABLE, Self::LARGE, Self::MEDIUM];

    /// Rows of C per workgroup.
    pub fn bm(self) -> u32 {
        self.wy * self.tm
    }

    /// Columns of C per workgroup.
    pub fn bn(self) -> u32 {
        self.wx * self.tn
    }

    /// Whether the tiled kernel can be built with these tiles: its register arrays hold 8 × 8,
    /// its workgroup slices 2048 floats each (16 KiB in all, WebGPU's default limit), its
    /// loaders read four values at a time, and WebGPU allows 256 threads per workgroup.
    pub fn is_valid(self) -> bool {
        (1..=8).contains(&self.tm)
            && (1..=8).contains(&self.tn)
            && self.wx * self.wy <= 256
            && self.bk > 0
            && self.bk.is_multiple_of(4)
            && self.bn().is_multiple_of(4)
            && self.bm() * self.bk <= 2048
            && self.bk * self.bn() <= 2048
    }

    /// The pipeline constants, by their WGSL names.
    pub fn constants(self) -> Vec<(&'static str, u32)> {
        vec![
            ("TM", self.tm),
            ("TN", self.tn),
            ("WX", self.wx),
            ("WY", self.wy),
            ("BK", self.bk),
        ]
    }
}
