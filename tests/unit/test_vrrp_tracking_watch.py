"""The interface watcher (director/vrrp/tracking.py): what it tells the trackers, and the
VMACs a reload is replacing, which it leaves alone meanwhile."""

from director.vrrp import tracking


class Seen:
    def __init__(self):
        self.updates = []

    def update(self, key, fine):
        self.updates.append((key, fine))


def test_a_held_interface_is_not_polled_until_released(monkeypatch):
    links = {"vrrp.51": True}
    monkeypatch.setattr(tracking, "interface_up", lambda name, linkbeat=False: links[name])
    watcher = tracking.InterfaceWatcher()
    seen = Seen()
    watcher.watch("vrrp.51", seen)
    assert seen.updates == [("interface vrrp.51", True)]
    watcher.held.add("vrrp.51")          # a reload deletes it and makes it again
    links["vrrp.51"] = False
    watcher.poll(1.0)
    assert seen.updates == [("interface vrrp.51", True)]       # the old instance saw nothing
    watcher.held.discard("vrrp.51")
    watcher.poll(1.1)
    assert seen.updates[-1] == ("interface vrrp.51", False)    # a real loss is seen again
