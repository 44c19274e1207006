import pytest

from kinformer import DeletedFinalStateUnknown, KeyFuncError, meta_namespace_key, objects, split_key
from tests.helpers import obj


def test_key_namespaced_and_cluster_scoped() -> None:
    assert meta_namespace_key(obj("a", "ns")) == "ns/a"
    assert meta_namespace_key(obj("node-1", None)) == "node-1"


def test_key_of_tombstone_is_its_key() -> None:
    assert meta_namespace_key(DeletedFinalStateUnknown("ns/a", None)) == "ns/a"


@pytest.mark.parametrize("bad", [{}, {"metadata": {}}, None, "x", {"metadata": None}])
def test_key_of_object_without_name_raises(bad: object) -> None:
    with pytest.raises(KeyFuncError):
        meta_namespace_key(bad)


def test_split_key() -> None:
    assert split_key("ns/a") == ("ns", "a")
    assert split_key("a") == ("", "a")
    for bad in ("a/b/c", "/a", "a/"):
        with pytest.raises(KeyFuncError):
            split_key(bad)


def test_tombstones_compare_by_value() -> None:
    assert DeletedFinalStateUnknown("k", obj("a")) == DeletedFinalStateUnknown("k", obj("a"))
    assert DeletedFinalStateUnknown("k", obj("a")) != DeletedFinalStateUnknown("k", obj("b"))


def test_accessors_on_dicts_and_tombstones() -> None:
    o = {"metadata": {"name": "a", "namespace": "n", "uid": "u1", "resourceVersion": "7",
                      "labels": {"app": "web"}, "annotations": {"x": "y"}},
         "spec": {"replicas": 3, "paused": False}, "status": {"phase": "Running"}}
    assert (objects.name(o), objects.namespace(o), objects.uid(o)) == ("a", "n", "u1")
    assert objects.resource_version(o) == "7"
    assert objects.labels(o) == {"app": "web"} and objects.annotations(o) == {"x": "y"}
    assert objects.field_value(o, "status.phase") == "Running"
    assert objects.field_value(o, "spec.replicas") == "3"
    assert objects.field_value(o, "spec.paused") == "false"
    assert objects.field_value(o, "spec.nodeName") == ""
    assert objects.name(DeletedFinalStateUnknown("n/a", o)) == "a"
    assert objects.labels({}) == {} and objects.resource_version(None) == ""
