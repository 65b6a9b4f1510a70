"""What the Kubernetes source knows (pure, no API server): watch events rebuild exactly the services built
from the object that changed, and removing what a service refers to is followed."""

import threading

from k8s.fakeapi import (
    make_endpoint_slice,
    make_gateway,
    make_gateway_class,
    make_http_route,
    make_ingress,
    make_ingress_class,
    make_service,
)
from tandem.agents.sources.k8s_services import Selection
from tandem.agents.sources.k8s_state import ClusterState


def members(state: ClusterState, key: str) -> list[str]:
    service = state.services[key]
    found = [m for port in service.ports for m in port.members] + [m for b in service.backends for m in b.members]
    return sorted(m.address for m in found)


def loaded() -> ClusterState:
    state = ClusterState(Selection(), "endpoints")
    state.replace("ingressclasses", None, [make_ingress_class()])
    state.replace("gatewayclasses", None, [make_gateway_class()])
    state.replace("services", None, [make_service("lb", ports=[80]),
                                     make_service("web", ports=[80], service_type="ClusterIP")])
    state.replace("endpointslices", None, [make_endpoint_slice("lb", ["10.0.0.1"]),
                                           make_endpoint_slice("web", ["10.0.1.1"])])
    state.replace("ingresses", None, [make_ingress("site", [(None, "/", "web", 80)])])
    state.replace("gateways", None, [make_gateway("gw", [{"name": "web", "port": 80, "protocol": "HTTP"}])])
    state.replace("httproutes", None, [make_http_route("r", "gw", [{"backendRefs": [{"name": "web", "port": 80}]}])])
    state.take_changed()
    return state


def test_an_endpoint_change_rebuilds_what_was_built_from_its_service_only() -> None:
    state = loaded()
    assert set(state.services) == {"default/lb", "ingress:default/site", "gateway:default/gw"}
    assert members(state, "ingress:default/site") == members(state, "gateway:default/gw") == ["10.0.1.1"]
    state.apply("endpointslices", "MODIFIED", make_endpoint_slice("web", ["10.0.1.1", "10.0.1.2"]))
    assert state.take_changed() == {"default/web", "ingress:default/site", "gateway:default/gw"}
    assert members(state, "gateway:default/gw") == ["10.0.1.1", "10.0.1.2"]
    state.apply("endpointslices", "MODIFIED", make_endpoint_slice("lb", ["10.0.0.2"]))
    assert state.take_changed() == {"default/lb"} and members(state, "default/lb") == ["10.0.0.2"]
    state.apply("endpointslices", "DELETED", make_endpoint_slice("lb", []))
    assert members(state, "default/lb") == ["10.0.0.2"]  # the picture of the last take_changed
    assert state.take_changed() == {"default/lb"} and members(state, "default/lb") == []


def test_reads_never_wait_for_a_rebuild_holding_the_lock() -> None:
    """The agent reads the state on the event loop that renews its lease: while a rebuild holds the lock
    (10,000 services take seconds), nothing has changed yet and the last picture answers, at once. The first
    picture is waited for: an empty one would make every service of the partition look gone."""
    fresh = ClusterState(Selection(), "endpoints")
    assert fresh.services == {} and fresh.present == set()
    fresh.replace("services", None, [make_service("lb", ports=[80])])
    with fresh._lock:
        waiting = threading.Thread(target=fresh.take_changed)
        waiting.start()
        waiting.join(0.2)
        assert waiting.is_alive()  # the first call waits for the rebuild
    waiting.join(5)
    assert set(fresh.services) == {"default/lb"} == fresh.present
    state = loaded()
    with state._lock:  # a rebuild under way (as the watches' threads do)
        state._changed = {"default/lb"}
        assert state.take_changed() == set()
        assert set(state.services) == {"default/lb", "ingress:default/site", "gateway:default/gw"}
        assert state.present >= set(state.services) and state.errors == {}
    assert state.take_changed() == {"default/lb"}  # told once the rebuild is done


def test_routes_and_ingresses_moving_between_services() -> None:
    state = loaded()
    state.apply("httproutes", "DELETED", make_http_route("r", "gw", []))
    assert state.take_changed() == {"gateway:default/gw"} and members(state, "gateway:default/gw") == []
    shared = make_ingress("site", [(None, "/", "web", 80)], annotations={"tandem.io/sharing-key": "front"})
    state.apply("ingresses", "MODIFIED", shared)
    assert state.take_changed() == {"ingress:default/site", "ingress:share.front"}
    assert "ingress:default/site" not in state.services and state.ingresses_of("ingress:share.front") == [
        ("default", "site")]
    state.apply("ingressclasses", "DELETED", make_ingress_class())
    assert state.take_changed() is None and "ingress:share.front" not in state.services


def test_a_relist_keeps_the_last_good_form_and_an_unchanged_class_rebuilds_nothing() -> None:
    state = loaded()
    before = state.services["default/lb"]
    state.replace("services", None, [make_service("lb", ports=[80], annotations={"tandem.io/colour": "red"}),
                                     make_service("web", ports=[80], service_type="ClusterIP")])
    assert state.services["default/lb"] is before and "colour" in state.errors["default/lb"]
    state.take_changed()
    state.apply("ingressclasses", "MODIFIED", make_ingress_class() | {"metadata": {"name": "tandem",
                                                                                   "labels": {"x": "y"}}})
    assert state.take_changed() == set()


def test_a_status_written_back_rebuilds_nothing_and_a_spec_change_does() -> None:
    """The statuses the agent writes come back as MODIFIED events: they change nothing built."""
    state = loaded()
    before = state.services["default/lb"]
    written = make_service("lb", ports=[80])
    written["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
    written["metadata"]["resourceVersion"] = "999"
    state.apply("services", "MODIFIED", written)
    assert state.take_changed() == set() and state.services["default/lb"] is before
    changed = make_service("lb", ports=[80, 443])
    state.apply("services", "MODIFIED", changed)
    assert state.take_changed() == {"default/lb"} and len(state.services["default/lb"].ports) == 2
