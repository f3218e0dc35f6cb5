//! The container-rootfs suite, one test binary: each module is a scenario file against real
//! images, registries and reference tools (the module heads say which). One binary links the
//! heavy dependency graph (the AWS SDKs, tokio, hyper) once instead of fifteen times, which
//! was minutes of CI and gigabytes of disk; nextest still runs every test in a process of its
//! own. Select a file's tests with `-E 'test(/^shim_matrix::/)'`.

mod examples;
mod exec_module;
mod fakeroot;
mod hostile;
mod layer_collisions;
mod lazy;
mod pull;
mod registry_faults;
mod runtime_loop;
mod runtime_ministack;
mod shim_abi;
mod shim_limits;
mod shim_matrix;
mod shim_probes;
mod shim_run;
mod third_party_tars;
