"""The generic netlink client (director/lb/genl.py) against this host's kernel: its own
controller family answers dumps and errors; a family the kernel lacks (IPVS here) is one clear
error, again and again, never a broken socket."""

from __future__ import annotations

import errno
import os

import pytest
from pyroute2.netlink import CTRL_CMD_GETFAMILY, ctrlmsg

from director.lb.genl import GenlError, GenlSocket


def test_a_dump_of_the_controller_lists_the_kernels_families():
    client = GenlSocket(family="nlctrl", message_class=ctrlmsg, version=1)
    try:
        for _ in range(3):                     # one socket, sequence numbers matched
            names = {reply.get_attr("CTRL_ATTR_FAMILY_NAME")
                     for reply in client.request(CTRL_CMD_GETFAMILY, [], dump=True)}
            assert "nlctrl" in names
        one = client.request(CTRL_CMD_GETFAMILY, [("CTRL_ATTR_FAMILY_NAME", "nlctrl")])
        assert one[0].get_attr("CTRL_ATTR_FAMILY_ID") == 0x10
        assert client.reopened == 0
    finally:
        client.close()


def test_the_kernels_error_is_an_oserror_with_its_errno():
    client = GenlSocket(family="nlctrl", message_class=ctrlmsg, version=1)
    try:
        with pytest.raises(GenlError) as refused:
            client.request(CTRL_CMD_GETFAMILY, [("CTRL_ATTR_FAMILY_NAME", "no-such-family")])
        assert refused.value.errno == errno.ENOENT
        # the socket stays usable after the kernel's error
        assert client.request(CTRL_CMD_GETFAMILY, [], dump=True)
    finally:
        client.close()


@pytest.mark.skipif(os.path.exists("/proc/net/ip_vs"), reason="this kernel has IPVS")
def test_a_kernel_without_ipvs_is_said_plainly_every_time():
    client = GenlSocket()
    for _ in range(3):
        with pytest.raises(GenlError) as refused:
            client.request(4, [], dump=True)
        assert refused.value.errno == errno.ENOENT
        assert "the kernel has no IPVS" in str(refused.value)
    client.close()
