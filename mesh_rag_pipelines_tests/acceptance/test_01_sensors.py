"""Everything that keeps the indexes in sync ships running: nobody has to switch it on."""

from mesh_rag_pipelines_tests.acceptance.harness import AUTOMATION_SENSOR, Acceptance

DOMAINS = {"commerce", "customer_support", "people"}
PRODUCT_SENSORS = {
    ("commerce", "catalog_products_source_sensor"),
    ("customer_support", "support_tickets_landing_sensor"),
    ("people", "hr_policies_source_sensor"),
    ("people", "system_docs_source_sensor"),
}


def test_every_location_has_its_product_sensors_and_an_automation_sensor(
    acceptance: Acceptance,
) -> None:
    sensors = set(acceptance.sensors())
    automation = {(domain, AUTOMATION_SENSOR) for domain in DOMAINS}
    assert sensors == PRODUCT_SENSORS | automation


def test_every_sensor_in_every_location_is_running_by_default(acceptance: Acceptance) -> None:
    not_running = {
        key: status for key, status in acceptance.sensors().items() if status != "RUNNING"
    }
    assert not_running == {}
