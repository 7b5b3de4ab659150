# Scenarios a-e of issue #6, sourced by guest.sh (phase_* functions).
# shellcheck shell=sh
need_agent() {
        has_agent && return 0
        skipc "phase $phase: kmscryptd or 'kmscrypt format' is not installed in this build"
        return 1
}
phase_setup() { need_agent || return 0; }
phase_main() { need_agent || return 0; }
phase_reboot() { need_agent || return 0; }
phase_outage() { need_agent || return 0; }
