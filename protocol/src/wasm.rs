//! Static inspection of Wasm modules: validation, ABI detection, import policy, declared memory.
//!
//! Used when a manifest is created (so a publisher learns of a problem before signing) and again
//! by every node before it compiles a blob (so a node never trusts the publisher's tooling).
//! The feature set is WebAssembly 2.0 (what wasmer's cranelift backend and Rust's
//! `wasm32-wasip1` target agree on); threads, GC, exceptions and memory64 are refused.

use std::collections::HashMap;

use wasmparser::types::{EntityType, Types};
use wasmparser::{CompositeInnerType, ValType, Validator, WasmFeatures};

use crate::limits::MAX_MODULE_SIZE;
use crate::manifest::Abi;

/// The only import namespace a WASI guest may use.
pub const WASI_NAMESPACE: &str = "wasi_snapshot_preview1";

/// The Wasm features a module may use.
pub const FEATURES: WasmFeatures = WasmFeatures::WASM2
    .union(WasmFeatures::BULK_MEMORY_OPT)
    .union(WasmFeatures::CALL_INDIRECT_OVERLONG);

/// What a node needs to know about a module before running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// The detected ABI.
    pub abi: Abi,
    /// Imported functions as (module, field); always in [`WASI_NAMESPACE`] for WASI, empty for raw.
    pub imports: Vec<(String, String)>,
    /// The declared initial size of the linear memory, in pages.
    pub memory_min_pages: u64,
    /// The declared maximum, if any.
    pub memory_max_pages: Option<u64>,
    /// Bytes that creating an instance writes before any guest code runs: active data segments
    /// and the tables' initial elements (8 bytes each).
    pub init_bytes: u64,
}

/// Why a module cannot be published or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WasmError {
    /// Larger than the protocol allows.
    #[error("module is {size} bytes; the limit is {MAX_MODULE_SIZE}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Not a valid WebAssembly module under the supported features.
    #[error("invalid module: {0}")]
    Invalid(String),
    /// Exports neither the raw ABI nor `_start`.
    #[error(
        "no entry point: export `wasmesh_alloc`, `wasmesh_handle` and `memory` (raw ABI) or `_start` (WASI)"
    )]
    NoEntryPoint,
    /// A required export is missing or has the wrong type.
    #[error("export `{name}` {problem}")]
    BadExport {
        /// The export name.
        name: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// An import the ABI does not provide.
    #[error("unsupported import {module}.{field}{}", allowed_note(*abi))]
    UnsupportedImport {
        /// The import's module namespace.
        module: String,
        /// The import's field name.
        field: String,
        /// The ABI the module was detected as.
        abi: Abi,
    },
}

fn allowed_note(abi: Abi) -> &'static str {
    match abi {
        Abi::Raw => " (raw-ABI modules may not import anything)",
        Abi::Wasi => " (WASI modules may import only functions of wasi_snapshot_preview1)",
    }
}

/// `bytes` without its custom sections, except `name` (function names for traps): what a
/// compiler needs. Custom sections (debug info, producers) can be most of a module, and
/// wasmer hashes every byte it is given. Returns `bytes` unchanged when there is nothing to
/// drop or it does not parse.
pub fn without_custom_sections(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut kept = Vec::new();
    let mut section_start = 8;
    let mut copied_to = 0;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else {
            return std::borrow::Cow::Borrowed(bytes);
        };
        let drop = matches!(&payload, wasmparser::Payload::CustomSection(c) if c.name() != "name");
        let Some((_, contents)) = payload.as_section() else {
            continue;
        };
        if drop {
            kept.extend_from_slice(&bytes[copied_to..section_start]);
            copied_to = contents.end;
        }
        section_start = contents.end;
    }
    if copied_to == 0 {
        return std::borrow::Cow::Borrowed(bytes);
    }
    kept.extend_from_slice(&bytes[copied_to..]);
    std::borrow::Cow::Owned(kept)
}

/// Validates `bytes` and determines its ABI, imports and declared memory.
pub fn inspect(bytes: &[u8]) -> Result<ModuleInfo, WasmError> {
    if bytes.len() as u64 > MAX_MODULE_SIZE {
        return Err(WasmError::TooLarge { size: bytes.len() });
    }
    let types = Validator::new_with_features(FEATURES)
        .validate_all(bytes)
        .map_err(|e| WasmError::Invalid(e.to_string()))?;
    let exports = exported_entities(&types);
    let abi = detect_abi(&types, &exports)?;
    let imports = check_imports(&types, abi)?;
    let (memory_min_pages, memory_max_pages) = match types.as_ref().memory_count() {
        0 => (0, Some(0)),
        _ => {
            let memory = types.as_ref().memory_at(0);
            (memory.initial, memory.maximum)
        }
    };
    let tables = types.as_ref().table_count();
    let table_bytes: u64 = (0..tables)
        .map(|index| types.as_ref().table_at(index).initial.saturating_mul(8))
        .sum();
    Ok(ModuleInfo {
        abi,
        imports,
        memory_min_pages,
        memory_max_pages,
        init_bytes: active_data_bytes(bytes).saturating_add(table_bytes),
    })
}

/// The bytes of a valid module's active data segments.
fn active_data_bytes(bytes: &[u8]) -> u64 {
    let mut total = 0u64;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(wasmparser::Payload::DataSection(reader)) = payload else {
            continue;
        };
        for data in reader.into_iter().flatten() {
            if matches!(data.kind, wasmparser::DataKind::Active { .. }) {
                total += data.data.len() as u64;
            }
        }
    }
    total
}

fn exported_entities(types: &Types) -> HashMap<String, EntityType> {
    types
        .as_ref()
        .core_exports()
        .into_iter()
        .flatten()
        .map(|(name, entity)| (name.to_owned(), entity))
        .collect()
}

fn detect_abi(types: &Types, exports: &HashMap<String, EntityType>) -> Result<Abi, WasmError> {
    let raw = ["wasmesh_alloc", "wasmesh_handle"]
        .iter()
        .any(|name| exports.contains_key(*name));
    if raw {
        require_func(
            types,
            exports,
            "wasmesh_alloc",
            &[ValType::I32],
            &[ValType::I32],
        )?;
        require_func(
            types,
            exports,
            "wasmesh_handle",
            &[ValType::I32, ValType::I32],
            &[ValType::I64],
        )?;
        require_memory(exports)?;
        Ok(Abi::Raw)
    } else if exports.contains_key("_start") {
        require_func(types, exports, "_start", &[], &[])?;
        require_memory(exports)?;
        Ok(Abi::Wasi)
    } else {
        Err(WasmError::NoEntryPoint)
    }
}

fn require_func(
    types: &Types,
    exports: &HashMap<String, EntityType>,
    name: &'static str,
    params: &[ValType],
    results: &[ValType],
) -> Result<(), WasmError> {
    let bad = |problem| WasmError::BadExport { name, problem };
    let Some(EntityType::Func(id) | EntityType::FuncExact(id)) = exports.get(name) else {
        return Err(bad("is missing or not a function"));
    };
    match &types.as_ref()[*id].composite_type.inner {
        CompositeInnerType::Func(ty) if ty.params() == params && ty.results() == results => Ok(()),
        _ => Err(bad(match name {
            "wasmesh_alloc" => "must have type (i32) -> i32",
            "wasmesh_handle" => "must have type (i32, i32) -> i64",
            _ => "must have type () -> ()",
        })),
    }
}

fn require_memory(exports: &HashMap<String, EntityType>) -> Result<(), WasmError> {
    match exports.get("memory") {
        Some(EntityType::Memory(_)) => Ok(()),
        _ => Err(WasmError::BadExport {
            name: "memory",
            problem: "is missing or not a memory",
        }),
    }
}

fn check_imports(types: &Types, abi: Abi) -> Result<Vec<(String, String)>, WasmError> {
    let mut imports = Vec::new();
    for (module, field, entity) in types.as_ref().core_imports().into_iter().flatten() {
        let allowed = abi == Abi::Wasi
            && module == WASI_NAMESPACE
            && matches!(entity, EntityType::Func(_) | EntityType::FuncExact(_));
        if !allowed {
            return Err(WasmError::UnsupportedImport {
                module: module.to_owned(),
                field: field.to_owned(),
                abi,
            });
        }
        imports.push((module.to_owned(), field.to_owned()));
    }
    Ok(imports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }

    const RAW: &str = r#"(module
        (memory (export "memory") 1 4)
        (func (export "wasmesh_alloc") (param i32) (result i32) i32.const 1024)
        (func (export "wasmesh_handle") (param i32 i32) (result i64) i64.const 0))"#;

    #[test]
    fn custom_sections_are_left_out_for_the_compiler_except_names() {
        let plain = wasm(RAW);
        assert!(matches!(
            without_custom_sections(&plain),
            std::borrow::Cow::Borrowed(_)
        ));
        let annotated = wasm(&RAW.replace(
            "(memory",
            r#"(@custom "debug" (after func) "0123456789abcdef") (@custom "name" (after func) "\00") (@custom "producers" "xyz") (memory"#,
        ));
        let stripped = without_custom_sections(&annotated);
        assert_eq!(
            stripped.len(),
            annotated.len() - (1 + 1 + 6 + 16) - (1 + 1 + 10 + 3)
        );
        let names: Vec<String> = wasmparser::Parser::new(0)
            .parse_all(&stripped)
            .filter_map(|p| match p.unwrap() {
                wasmparser::Payload::CustomSection(c) => Some(c.name().to_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["name"]);
        assert_eq!(inspect(&stripped).unwrap().abi, Abi::Raw);
    }

    #[test]
    fn detects_raw() {
        let info = inspect(&wasm(RAW)).unwrap();
        assert_eq!(info.abi, Abi::Raw);
        assert_eq!((info.memory_min_pages, info.memory_max_pages), (1, Some(4)));
    }

    #[test]
    fn detects_wasi_and_lists_imports() {
        let info = inspect(&wasm(
            r#"(module
                (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                (memory (export "memory") 1)
                (func (export "_start")))"#,
        ))
        .unwrap();
        assert_eq!(info.abi, Abi::Wasi);
        assert_eq!(
            info.imports,
            vec![(WASI_NAMESPACE.into(), "fd_write".into())]
        );
    }

    #[test]
    fn names_an_unsupported_import() {
        let err = inspect(&wasm(
            r#"(module
                (import "env" "steal" (func))
                (memory (export "memory") 1)
                (func (export "_start")))"#,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("env.steal"), "{err}");
        let err = inspect(&wasm(
            r#"(module
                (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                (memory (export "memory") 1)
                (func (export "wasmesh_alloc") (param i32) (result i32) i32.const 0)
                (func (export "wasmesh_handle") (param i32 i32) (result i64) i64.const 0))"#,
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("wasi_snapshot_preview1.fd_write"),
            "{err}"
        );
    }

    #[test]
    fn refuses_wrong_signatures_and_missing_entry_points() {
        assert_eq!(
            inspect(&wasm(r#"(module (memory (export "memory") 1))"#)),
            Err(WasmError::NoEntryPoint)
        );
        let err = inspect(&wasm(
            r#"(module
                (memory (export "memory") 1)
                (func (export "wasmesh_alloc") (param i64) (result i32) i32.const 0)
                (func (export "wasmesh_handle") (param i32 i32) (result i64) i64.const 0))"#,
        ))
        .unwrap_err();
        assert!(matches!(
            err,
            WasmError::BadExport {
                name: "wasmesh_alloc",
                ..
            }
        ));
    }

    #[test]
    fn refuses_garbage() {
        assert!(matches!(inspect(b"not wasm"), Err(WasmError::Invalid(_))));
    }
}
