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

/// Every variant the engine can ask for parses and validates with naga.
#[test]
fn every_variant_validates_with_naga() {
    let mut failures = Vec::new();
    for (shader, defines) in variants() {
        let src = shader.source(&defines).unwrap();
        let module = match naga::front::wgsl::parse_str(&src) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!(
                    "{shader:?} {defines:?}: {}",
                    e.emit_to_string(&src)
                ));
                continue;
            }
        };
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        );
        if let Err(e) = validator.validate(&module) {
            failures.push(format!(
                "{shader:?} {defines:?}: {}",
                e.emit_to_string(&src)
            ));
        }
    }
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
