"""Serving looks customers up through the feature store's one lookup by id (`store.online_features_by_id`): an id is typed
as the view declares, so `"7"` and `7` find the same customer of an integer key; an id that cannot be that type is a 422
naming the key, an unknown one a 404. A real `churnops serve` process on a copy of the serving tests' home, its view
declaring an integer entity."""
import httpx
import pytest

from conftest import free_port_number
from test_serve_helpers import copy_home, running_server, template_home

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from churnops import store
    home = copy_home(template_home()[0], tmp_path_factory.mktemp("serve_lookup"))
    fs = store.FeatureStore(home)                                     # the view declares its entity's type, as churn views do
    fs.apply([fs.views["serve_test"].model_copy(update={"tags": {"entity_dtype": "int"}})])
    fs.online.close()
    with running_server(home, free_port_number()) as srv:
        yield srv


def post(srv, payload):
    return httpx.post(srv.url + "/predict", json=payload, timeout=10)


def test_text_and_number_ids_find_the_same_customer(server):
    as_number, as_text = post(server, {"customer_id": 7}), post(server, {"customer_id": "7"})
    assert as_number.status_code == as_text.status_code == 200, as_text.text
    assert as_text.json()["churn_probability"] == as_number.json()["churn_probability"]
    assert as_text.json()["customer_id"] == "7"                      # echoed as sent


def test_an_id_of_the_wrong_type_is_a_422_naming_the_key(server):
    r = post(server, [{"customer_id": 3}, {"customer_id": "seven"}])
    assert r.status_code == 422, r.text
    (d,) = r.json()["detail"]
    assert d["field"] == "customer_id" and "must be an integer" in d["msg"] and "'seven'" in d["msg"]
    assert post(server, {"customer_id": 987654}).status_code == 404
