//! `execl`, `execle` and `execlp` are C-variadic. Stable Rust cannot define variadic
//! functions, and symbols from C objects are not exported from a Rust cdylib, so each is
//! a naked Rust function that jumps, with the caller's registers and stack untouched, to
//! the C implementation in `execl.c`.

unsafe extern "C" {
    fn scar_fc_execl_c();
    fn scar_fc_execle_c();
    fn scar_fc_execlp_c();
}

macro_rules! jump_to {
    ($($name:ident => $target:ident),*) => {$(
        /// # Safety
        /// libc's contract for the function of the same name.
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name() {
            #[cfg(target_arch = "x86_64")]
            core::arch::naked_asm!("jmp {}", sym $target);
            #[cfg(target_arch = "aarch64")]
            core::arch::naked_asm!("b {}", sym $target);
        }
    )*};
}

jump_to!(execl => scar_fc_execl_c, execle => scar_fc_execle_c, execlp => scar_fc_execlp_c);
