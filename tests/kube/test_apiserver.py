"""The fake API server keeps the semantics a real one has, where the `kubernetes` client (and so Pareto) can tell:
checked here through the real client and over raw HTTP, so the other tests rest on something honest."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from .apiserver import TOKEN, FakeApiServer


@pytest.fixture
def server():
    api = FakeApiServer().start()
    yield api
    api.stop()


@pytest.fixture
def api_client(server, tmp_path):
    cfg = client.Configuration()
    config.load_kube_config(
        config_file=str(server.write_kubeconfig(tmp_path / "kubeconfig")),
        client_configuration=cfg,
        persist_config=False,
    )
    with client.ApiClient(cfg) as api:
        yield api


def raw(server, method, path, body=None, content_type="application/json"):
    data = json.dumps(body).encode() if body else None
    request = urllib.request.Request(server.url + path, method=method, data=data)  # noqa: S310  (the local fake)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310  (the local fake)
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def rayservice(name="demo", namespace="ns"):
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "demo"}},
        "spec": {
            "serveConfigV2": "applications: []\n",
            "rayClusterConfig": {
                "headGroupSpec": {"template": {"spec": {"containers": [{"name": "h", "image": "i"}]}}}
            },
        },
    }


def namespace(api_client, name="ns"):
    client.CoreV1Api(api_client).create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def test_create_sets_server_fields_and_a_second_create_is_already_exists(server, api_client):
    namespace(api_client)
    custom = client.CustomObjectsApi(api_client)
    made = custom.create_namespaced_custom_object("ray.io", "v1", "ns", "rayservices", rayservice())
    meta = made["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1 and int(meta["resourceVersion"])
    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object("ray.io", "v1", "ns", "rayservices", rayservice())
    assert caught.value.status == 409
    body = json.loads(caught.value.body)
    assert (body["kind"], body["reason"], body["message"]) == (
        "Status",
        "AlreadyExists",
        'rayservices.ray.io "demo" already exists',
    )


def test_create_in_a_missing_namespace_is_not_found(server, api_client):
    with pytest.raises(ApiException) as caught:
        client.CustomObjectsApi(api_client).create_namespaced_custom_object(
            "ray.io", "v1", "nowhere", "rayservices", rayservice(namespace="nowhere")
        )
    assert caught.value.status == 404
    assert json.loads(caught.value.body)["message"] == 'namespaces "nowhere" not found'


def test_a_stale_resource_version_is_a_conflict_and_a_custom_resource_needs_one(server, api_client):
    namespace(api_client)
    custom = client.CustomObjectsApi(api_client)
    made = custom.create_namespaced_custom_object("ray.io", "v1", "ns", "rayservices", rayservice())
    made["spec"]["serveConfigV2"] = "applications: [{name: a}]\n"
    updated = custom.replace_namespaced_custom_object("ray.io", "v1", "ns", "rayservices", "demo", made)
    assert updated["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as caught:
        custom.replace_namespaced_custom_object("ray.io", "v1", "ns", "rayservices", "demo", made)  # old version
    assert (caught.value.status, json.loads(caught.value.body)["reason"]) == (409, "Conflict")
    del updated["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as caught:
        custom.replace_namespaced_custom_object("ray.io", "v1", "ns", "rayservices", "demo", updated)
    assert caught.value.status == 422


def test_the_status_subresource_and_the_main_resource_do_not_write_each_other(server, api_client):
    namespace(api_client)
    custom = client.CustomObjectsApi(api_client)
    made = custom.create_namespaced_custom_object(
        "ray.io", "v1", "ns", "rayservices", {**rayservice(), "status": {"x": 1}}
    )
    assert "status" not in made  # status is not taken on create
    made["status"] = {"serviceStatus": "Running"}
    after = custom.replace_namespaced_custom_object_status("ray.io", "v1", "ns", "rayservices", "demo", made)
    assert after["status"] == {"serviceStatus": "Running"} and after["metadata"]["generation"] == 1
    after["status"] = {"serviceStatus": "Lost"}
    after["metadata"]["labels"]["edited"] = "yes"
    again = custom.replace_namespaced_custom_object("ray.io", "v1", "ns", "rayservices", "demo", after)
    assert again["status"] == {"serviceStatus": "Running"}
    assert again["metadata"]["labels"]["edited"] == "yes"
    assert again["metadata"]["generation"] == 1  # metadata only: the spec did not change


def test_a_write_that_changes_nothing_keeps_the_version(server, api_client):
    namespace(api_client)
    custom = client.CustomObjectsApi(api_client)
    made = custom.create_namespaced_custom_object("ray.io", "v1", "ns", "rayservices", rayservice())
    same = custom.replace_namespaced_custom_object("ray.io", "v1", "ns", "rayservices", "demo", made)
    assert same["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]


def test_strategic_merge_is_refused_for_custom_resources_and_merge_patch_works(server, api_client):
    namespace(api_client)
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        "ray.io", "v1", "ns", "rayservices", rayservice()
    )
    path = "/apis/ray.io/v1/namespaces/ns/rayservices/demo"
    patch = {"metadata": {"labels": {"x": "y"}}}
    status, body = raw(server, "PATCH", path, patch, "application/strategic-merge-patch+json")
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")
    status, body = raw(server, "PATCH", path, patch, "application/merge-patch+json")
    assert status == 200 and body["metadata"]["labels"] == {"app": "demo", "x": "y"}
    status, body = raw(server, "PATCH", "/api/v1/namespaces/ns", patch, "application/strategic-merge-patch+json")
    assert status == 200 and body["metadata"]["labels"]["x"] == "y"


def test_delete_answers_a_status_or_the_object_being_deleted_in_the_foreground(server, api_client):
    namespace(api_client)
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object("ray.io", "v1", "ns", "rayservices", rayservice("a"))
    custom.create_namespaced_custom_object("ray.io", "v1", "ns", "rayservices", rayservice("b"))
    answer = custom.delete_namespaced_custom_object("ray.io", "v1", "ns", "rayservices", "a")
    assert (answer["kind"], answer["status"]) == ("Status", "Success")
    answer = custom.delete_namespaced_custom_object(
        "ray.io", "v1", "ns", "rayservices", "b", propagation_policy="Foreground"
    )
    assert answer["metadata"]["deletionTimestamp"] and answer["metadata"]["finalizers"] == ["foregroundDeletion"]
    server.finish_deletion("RayService", "b", "ns", "foregroundDeletion")
    assert server.get("RayService", "b", "ns") is None
    with pytest.raises(ApiException) as caught:
        custom.delete_namespaced_custom_object("ray.io", "v1", "ns", "rayservices", "a")
    assert caught.value.status == 404


def test_lists_carry_a_version_and_filter_by_labels(server, api_client):
    namespace(api_client)
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object("ray.io", "v1", "ns", "rayservices", rayservice("a"))
    listed = custom.list_cluster_custom_object("ray.io", "v1", "rayservices", label_selector="app=demo")
    assert listed["metadata"]["resourceVersion"] == str(server.rv)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    assert (
        custom.list_cluster_custom_object("ray.io", "v1", "rayservices", label_selector="app in (x,y)")["items"] == []
    )
    assert len(custom.list_cluster_custom_object("ray.io", "v1", "rayservices", label_selector="!team")["items"]) == 1


def test_watch_replays_from_a_version_ends_at_the_timeout_and_expires_after_compaction(server, api_client):
    namespace(api_client)
    custom = client.CustomObjectsApi(api_client)
    made = custom.create_namespaced_custom_object("ray.io", "v1", "ns", "rayservices", rayservice("a"))
    server.set_status("RayService", "a", "ns", {"serviceStatus": "Running"})
    events = list(
        watch.Watch().stream(custom.list_cluster_custom_object, "ray.io", "v1", "rayservices", timeout_seconds=1)
    )
    assert [e["type"] for e in events] == ["ADDED"]  # no version: what exists now
    since = made["metadata"]["resourceVersion"]
    events = list(
        watch.Watch().stream(
            custom.list_cluster_custom_object, "ray.io", "v1", "rayservices", resource_version=since, timeout_seconds=1
        )
    )
    assert [(e["type"], e["raw_object"].get("status")) for e in events] == [("MODIFIED", {"serviceStatus": "Running"})]
    server.compact()
    with pytest.raises(ApiException) as caught:
        list(
            watch.Watch().stream(
                custom.list_cluster_custom_object,
                "ray.io",
                "v1",
                "rayservices",
                resource_version=since,
                timeout_seconds=1,
            )
        )
    assert caught.value.status == 410


def test_a_wrong_token_is_unauthorized_and_an_unserved_resource_is_not_found(server):
    request = urllib.request.Request(server.url + "/api/v1/namespaces")  # noqa: S310
    request.add_header("Authorization", "Bearer nope")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)  # noqa: S310
    assert caught.value.code == 401
    server.kuberay = False
    status, body = raw(server, "GET", "/apis/ray.io/v1/rayservices")
    assert (status, body["message"]) == (404, "the server could not find the requested resource")


def test_invalid_objects_are_refused_with_the_schema_problem(server, api_client):
    namespace(api_client)
    bad = rayservice()
    bad["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"] = {"num-gpus": 0}
    status, body = raw(server, "POST", "/apis/ray.io/v1/namespaces/ns/rayservices", bad)
    assert (status, body["reason"]) == (422, "Invalid")
    assert "rayStartParams.num-gpus" in body["message"]
