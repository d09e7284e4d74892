# shellcheck shell=bash
# Shared by benches/forward.sh and benches/load.sh (sourced, not run): the three
# namespaces gen --veth-- dut --veth-- far that both measure through, their cleanup and
# the removal of an earlier run's leftovers. The caller sets PIDS=() and TMP first.

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Kills what runs in the namespaces and removes them, and TMP.
bench_cleanup() { # NS...
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ns in "$@"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -TERM 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in "$@"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$TMP"
}

# Namespaces an earlier run with this prefix left behind.
bench_remove_leftovers() { # PREFIX
    for ns in $(ip netns list | awk '{print $1}' | grep "^$1" || true); do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
        ip netns del "$ns"
    done
}

# gen (g0) -- (dx) dut (dp) -- (FAR_IF) far, IPv6 off, the LB's MACs on the dut's
# ports, rp_filter off in the dut (the kernel baseline forwards between them).
bench_topology() { # GEN DUT FAR FAR_IF FAR_MAC GEN_MAC EXT_MAC PROV_MAC
    local gen=$1 dut=$2 far=$3 far_if=$4 far_mac=$5 gen_mac=$6 ext_mac=$7 prov_mac=$8 ns
    for ns in "$gen" "$dut" "$far"; do
        ip netns add "$ns"
        nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
        ip -n "$ns" link set lo up
    done
    ip -n "$gen" link add g0 type veth peer name dx netns "$dut"
    ip -n "$dut" link add dp type veth peer name "$far_if" netns "$far"
    ip -n "$gen" link set g0 address "$gen_mac" up
    ip -n "$dut" link set dx address "$ext_mac" up
    ip -n "$dut" link set dp address "$prov_mac" mtu 1600 up
    ip -n "$far" link set "$far_if" address "$far_mac" mtu 1600 up
    nsx "$dut" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
        net.ipv4.conf.dx.rp_filter=0 net.ipv4.conf.dp.rp_filter=0
}
