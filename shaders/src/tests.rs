use super::*;

fn lookup(name: &str) -> Option<&'static str> {
    match name {
        "main.wgsl" => Some(
            "a\n#ifdef X\nx\n#ifndef Y\nnot y\n#else\ny\n#endif\n#else\nno x\n#endif\n#include \"inc.wgsl\"\nz\n",
        ),
        "inc.wgsl" => Some("#define Y\ninc\n#ifdef Y\nyy\n#endif\n"),
        "loop.wgsl" => Some("#include \"loop.wgsl\"\n"),
        "open.wgsl" => Some("#ifdef A\n"),
        "stray.wgsl" => Some("#endif\n"),
        "bad.wgsl" => Some("#pragma x\n"),
        _ => None,
    }
}

#[test]
fn preprocessor_selects_branches_and_includes() {
    assert_eq!(
        preprocess("main.wgsl", &[], &lookup).unwrap(),
        "a\nno x\ninc\nyy\nz\n"
    );
    assert_eq!(
        preprocess("main.wgsl", &["X"], &lookup).unwrap(),
        "a\nx\nnot y\ninc\nyy\nz\n"
    );
    assert_eq!(
        preprocess("main.wgsl", &["X", "Y"], &lookup).unwrap(),
        "a\nx\ny\ninc\nyy\nz\n"
    );
}

#[test]
fn preprocessor_reports_malformed_input() {
    assert!(matches!(
        preprocess("loop.wgsl", &[], &lookup),
        Err(PreprocessError::RecursiveInclude { .. })
    ));
    assert!(matches!(
        preprocess("open.wgsl", &[], &lookup),
        Err(PreprocessError::Unclosed { .. })
    ));
    assert!(matches!(
        preprocess("stray.wgsl", &[], &lookup),
        Err(PreprocessError::Unbalanced { .. })
    ));
    let err = preprocess("bad.wgsl", &[], &lookup).unwrap_err();
    assert_eq!(err.to_string(), "bad.wgsl:1: unknown directive 'pragma'");
    assert!(matches!(
        preprocess("nope.wgsl", &[], &lookup),
        Err(PreprocessError::MissingInclude { .. })
    ));
}

/// Every variant the engine can ask for parses, validates with naga and translates to SPIR-V
/// (with its `override` constants at their defaults).
#[test]
fn every_variant_validates_with_naga() {
    let failures: Vec<String> = variants()
        .into_iter()
        .filter_map(|(shader, defines)| {
            let src = shader.source(&defines).unwrap();
            let e = compile_for_vulkan(&src, &[]).err()?;
            Some(format!("{shader:?} {defines:?}: {e}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "invalid shaders:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_shader_file_is_covered_by_a_variant() {
    for shader in Shader::ALL {
        assert!(
            variants().iter().any(|(s, _)| *s == shader),
            "{shader:?} has no variant"
        );
        assert!(!shader.raw_source().is_empty());
    }
}

/// Parse, validate, apply pipeline `constants` (as wgpu does at pipeline creation) and
/// translate to SPIR-V (as wgpu does on Vulkan): the module's workgroup size, or what failed.
fn compile_for_vulkan(src: &str, constants: &[(&str, u32)]) -> Result<[u32; 3], String> {
    use naga::back::PipelineConstants;
    use naga::back::pipeline_constants::process_overrides;
    let module = naga::front::wgsl::parse_str(src).map_err(|e| e.emit_to_string(src))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| e.emit_to_string(src))?;
    let constants: PipelineConstants = constants
        .iter()
        .map(|(k, v)| (k.to_string(), *v as f64))
        .collect();
    let entry = Some((naga::ShaderStage::Compute, "main"));
    let (module, info) =
        process_overrides(&module, &info, entry, &constants).map_err(|e| e.to_string())?;
    let options = naga::back::spv::Options::default();
    naga::back::spv::write_vec(&module, &info, &options, None)
        .map_err(|e| format!("SPIR-V: {e}"))?;
    Ok(module.entry_points[0].workgroup_size)
}

/// Every tile configuration of the tiled matmul, with every B source, validates with naga once
/// its `override` constants are applied (as wgpu applies them at pipeline creation) and
/// translates to SPIR-V; and the checks `is_valid` makes reject what the shader cannot hold.
#[test]
fn every_matmul_tile_configuration_validates_with_its_constants() {
    let tiled: Vec<Vec<&str>> = variants()
        .into_iter()
        .filter(|(s, d)| *s == Shader::Matmul && !d.contains(&"DIRECT") && !d.contains(&"COOP"))
        .map(|(_, d)| d)
        .collect();
    assert_eq!(
        tiled.len(),
        2 * WeightFormat::ALL.len() + 2,
        "every weight format × (W, WT) + B_STRIDED (f32, f16)"
    );
    let mut failures = Vec::new();
    for tiles in MatmulTiles::ALL {
        assert!(tiles.is_valid(), "{tiles:?}");
        for defines in &tiled {
            let src = Shader::Matmul.source(defines).unwrap();
            match compile_for_vulkan(&src, &tiles.constants()) {
                Ok(size) => assert_eq!(size, [tiles.wx * tiles.wy, 1, 1], "{tiles:?}"),
                Err(e) => failures.push(format!("{tiles:?} {defines:?}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let bad = |f: fn(&mut MatmulTiles)| {
        let mut t = MatmulTiles::PORTABLE;
        f(&mut t);
        t.is_valid()
    };
    assert!(!bad(|t| t.tm = 9), "register arrays hold 8");
    assert!(!bad(|t| t.bk = 6), "loaders read 4 k at once");
    assert!(!bad(|t| t.bk = 64), "64 × 64 floats do not fit 2048");
    assert!(!bad(|t| t.wx = 32), "512 threads");
}

/// The cooperative-matrix and f16 builds translate to SPIR-V once their constants are applied,
/// as wgpu does on Vulkan (this machine's adapter has no cooperative matrices, so this is where
/// the COOP kernel is checked short of a GPU that has them).
#[test]
fn cooperative_matrix_and_f16_builds_translate_to_spirv() {
    let builds: Vec<Vec<&str>> = variants()
        .into_iter()
        .filter(|(s, d)| *s == Shader::Matmul && (d.contains(&"COOP") || d.contains(&"F16")))
        .map(|(_, d)| d)
        .collect();
    assert_eq!(
        builds.len(),
        2 * WeightFormat::ALL.len() + 4,
        "(every weight format × (W, WT) + B_STRIDED) COOP + 3 F16"
    );
    for defines in builds {
        let src = Shader::Matmul.source(&defines).unwrap();
        assert!(src.contains("enable f16;"), "{defines:?}");
        let coop = defines.contains(&"COOP");
        assert_eq!(src.contains("enable wgpu_cooperative_matrix;"), coop);
        let constants: &[(&str, u32)] = if coop { &[("SG", 32)] } else { &[] };
        let size =
            compile_for_vulkan(&src, constants).unwrap_or_else(|e| panic!("{defines:?}: {e}"));
        if coop {
            assert_eq!(size, [32, 1, 1]);
        }
    }
}

/// The format table is consistent: unique names, flags and ids; every flag is a section of
/// `weights.wgsl`; rows are whole blocks of whole words after repacking.
#[test]
fn weight_format_table_is_consistent() {
    let weights = source_file("weights.wgsl").unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for &f in WeightFormat::ALL {
        assert!(seen.insert(f.ggml_id()), "{f}: duplicate id");
        assert_eq!(f.define(), format!("W_{}", f.name()));
        assert!(
            weights.contains(&format!("#ifdef {}\n", f.define())),
            "weights.wgsl has no section for {f}"
        );
        assert_eq!(f.k_multiple() % 4, 0, "{f}");
        assert_eq!(f.k_multiple() % f.block_values(), 0, "{f}");
    }
    assert_eq!(WeightFormat::Q4_K.to_string(), "Q4_K");
    assert!(WeightFormat::names().starts_with("F32, F16, Q4_0"));
}
