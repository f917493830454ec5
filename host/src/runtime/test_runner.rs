//! Running a plugin crate's unit tests, which `cargo test` builds for
//! `wasm32-wasip2` as a WASI command: `stackhost sdk test-runner`, the
//! runner the scaffold's `.cargo/config.toml` names. The test binary gets
//! this terminal's stdio, its arguments and environment, and nothing
//! else of WASI's sandbox widened (no files, no network). The
//! `stackhost:host` interfaces it imports are there but trap when
//! called: a unit test tests plan logic, not the host (run the plugin
//! end to end with `stackhost plugin dev` for that).

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

struct TestState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for TestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Run the WASI command `file` with `args`; its exit status.
pub fn run(file: &std::path::Path, args: &[String]) -> anyhow::Result<i32> {
    use anyhow::Context as _;
    let engine = Engine::new(
        Config::new()
            .wasm_component_model(true)
            .wasm_backtrace_max_frames(None),
    )
    .map_err(anyhow::Error::from)?;
    let component = Component::from_file(&engine, file)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{} is not a WebAssembly component", file.display()))?;
    let mut linker: Linker<TestState> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
    stub_host_imports(&engine, &component, &mut linker)?;
    let name = file
        .file_name()
        .map_or_else(|| "test".into(), |n| n.to_string_lossy().into_owned());
    // A panic aborts a wasm32-wasip2 program, so libtest cannot print a
    // captured test's output after it fails: never capture.
    let mut args = args.to_vec();
    if !args
        .iter()
        .any(|a| a == "--nocapture" || a == "--no-capture")
    {
        args.push("--nocapture".into());
    }
    let wasi = wasmtime_wasi::WasiCtxBuilder::new()
        .inherit_stdio()
        .inherit_env()
        .arg(name)
        .args(&args)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let mut store = Store::new(
        &engine,
        TestState {
            wasi,
            table: ResourceTable::new(),
        },
    );
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        let command = Command::instantiate_async(&mut store, &component, &linker)
            .await
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "{} is not a WASI command (is it a `cargo test` binary?)",
                    file.display()
                )
            })?;
        match command.wasi_cli_run().call_run(&mut store).await {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => Ok(exit.0),
                None if e.downcast_ref::<wasmtime::Trap>()
                    == Some(&wasmtime::Trap::UnreachableCodeReached) =>
                {
                    eprintln!(
                        "\nstackhost sdk test-runner: a test panicked (its message is above); a \
                         panic aborts a wasm32-wasip2 program, so the tests after it did not run"
                    );
                    Ok(101)
                }
                None => Err(anyhow::Error::from(e).context("the test binary trapped")),
            },
        }
    })
}

/// A stand-in for each resource of a stubbed interface (distinct types,
/// so that two resources of one interface stay two).
struct Stub<const N: usize>;

/// Define every function of the `stackhost:host` interfaces `component`
/// imports as a trap that says why, and their resources as stand-ins.
/// (Wasmtime's own `define_unknown_imports_as_traps` would also stub the
/// WASI imports it matches by semver only, such as `@0.2.6` against the
/// `@0.2.12` it provides.)
fn stub_host_imports(
    engine: &Engine,
    component: &Component,
    linker: &mut Linker<TestState>,
) -> anyhow::Result<()> {
    use wasmtime::component::ResourceType;
    use wasmtime::component::types::ComponentItem;
    let mut resources = 0usize;
    for (name, item) in component.component_type().imports(engine) {
        let (Some(_), ComponentItem::ComponentInstance(instance)) =
            (name.strip_prefix("stackhost:host/"), item.ty)
        else {
            continue;
        };
        let mut defined = linker.instance(name).map_err(anyhow::Error::from)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{name}#{export}");
                    defined
                        .func_new(export, move |_, _, _, _| {
                            Err(wasmtime::Error::msg(format!(
                                "a unit test called the host ({what}): tests run without it; \
                                 run the plugin with `stackhost plugin dev` to use the host"
                            )))
                        })
                        .map_err(anyhow::Error::from)?;
                }
                ComponentItem::Resource(_) => {
                    let ty = match resources {
                        0 => ResourceType::host::<Stub<0>>(),
                        1 => ResourceType::host::<Stub<1>>(),
                        2 => ResourceType::host::<Stub<2>>(),
                        3 => ResourceType::host::<Stub<3>>(),
                        4 => ResourceType::host::<Stub<4>>(),
                        5 => ResourceType::host::<Stub<5>>(),
                        6 => ResourceType::host::<Stub<6>>(),
                        _ => ResourceType::host::<Stub<7>>(),
                    };
                    resources += 1;
                    defined
                        .resource(export, ty, |_, _| Ok(()))
                        .map_err(anyhow::Error::from)?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}
