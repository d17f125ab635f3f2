# Runs in the qemu guest (tests/functional/test_vrrp_ipvlan_qemu.py): this host's kernel has
# no ipvlan, the guest's has. The daemon with use_ipvlan on a veth: the ipvlan is made (L2,
# private), holds its address and the VIP once MASTER, and goes on stop. $PYTHON and $REPO come
# from the test; results go to $RESULTS.
set -u
cd "$REPO"
ip link add eth0 type veth peer name eth0p
ip addr add 192.0.2.1/24 dev eth0
ip link set eth0 up
ip link set eth0p up
ip link set lo up
cat > /tmp/ipvlan.conf <<'CONF'
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    use_ipvlan ipvl51 192.0.2.51/24 private
    virtual_ipaddress {
        192.0.2.100/24
    }
}
CONF
"$PYTHON" -m director -l -n -P -f /tmp/ipvlan.conf --web off --state-dir /tmp/state \
    > "$RESULTS/daemon.log" 2>&1 &
D=$!
for _ in $(seq 240); do
    ip -4 addr show dev ipvl51 2>/dev/null | grep -q 192.0.2.100 && break
    sleep 0.5
done
ip -d -j link show dev ipvl51 > "$RESULTS/link.json"
ip -j addr show dev ipvl51 > "$RESULTS/addr.json"
kill $D
wait $D
echo $? > "$RESULTS/daemon_rc"
ip link show dev ipvl51 > "$RESULTS/after_stop" 2>&1
true
