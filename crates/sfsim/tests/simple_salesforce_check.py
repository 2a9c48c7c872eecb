"""Drives sfsim with simple-salesforce, a widely used third-party Salesforce client,
unchanged: pointed at sfsim's https instance URL with an access token."""
import os
import sys

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

session = requests.Session()
session.verify = os.environ["SFSIM_CA"]
sf = Salesforce(instance_url=os.environ["SFSIM_URL"], session_id=os.environ["SFSIM_TOKEN"], session=session, version="62.0")

assignments = sf.query_all("SELECT Id, AssigneeId, PermissionSet.Name FROM PermissionSetAssignment")
assert assignments["done"] and assignments["totalSize"] == len(assignments["records"]) > 2000, assignments["totalSize"]
assert len({r["Id"] for r in assignments["records"]}) == assignments["totalSize"]

users = sf.query("SELECT Id, Username, Profile.Name FROM User WHERE IsActive = true LIMIT 5")
first = users["records"][0]
assert first["Profile"]["Name"], first
assert sf.User.get(first["Id"])["Username"] == first["Username"]
# ?fields= returns only those fields, and refuses one the object does not have.
picked = sf.User.get(first["Id"], params={"fields": "Username,IsActive"})
assert set(picked) == {"attributes", "Username", "IsActive"}, picked
try:
    sf.User.get(first["Id"], params={"fields": "Username,Shoe_Size"})
    sys.exit("an unknown field was accepted")
except SalesforceMalformedRequest as e:
    assert e.content[0]["errorCode"] == "INVALID_FIELD", e.content
# Several records in one call (sObject collections), in the order asked, null for an
# id that names none.
other = users["records"][1]["Id"]
missing_id = first["Id"][:9] + "zzzzzz" + first["Id"][15:]
collection = requests.get(os.environ["SFSIM_URL"] + "/services/data/v62.0/composite/sobjects/User",
                          params={"ids": ",".join([other, missing_id, first["Id"]]), "fields": "Id,Username"},
                          headers={"Authorization": "Bearer " + os.environ["SFSIM_TOKEN"]}, verify=os.environ["SFSIM_CA"]).json()
assert [r and r["Id"] for r in collection] == [other, None, first["Id"]], collection
assert collection[2]["Username"] == first["Username"] and set(collection[2]) == {"attributes", "Id", "Username"}, collection

# queryAll (deleted rows included) answers as query does: sfsim deletes nothing.
everyone = sf.query_all("SELECT Id FROM User", include_deleted=True)
assert everyone["totalSize"] == sf.query("SELECT COUNT() FROM User")["totalSize"], everyone["totalSize"]
described = sf.User.describe()
username = next(f for f in described["fields"] if f["name"] == "Username")
assert (username["type"], username["soapType"], username["length"], username["createable"]) == ("string", "xsd:string", 255, False), username
profile = next(f for f in described["fields"] if f["name"] == "ProfileId")
assert (profile["referenceTo"], profile["relationshipName"]) == (["Profile"], "Profile"), profile
assert described["keyPrefix"] == "005" and described["queryable"] is True, {k: v for k, v in described.items() if k != "fields"}
basic = sf.User.metadata()
assert (basic["objectDescribe"]["name"], basic["objectDescribe"]["keyPrefix"]) == ("User", "005"), basic
assert basic["objectDescribe"]["queryable"] is True and basic["recentItems"] == [], basic
assert any(o["name"] == "User" and o["retrieveable"] for o in sf.describe()["sobjects"])
limits = sf.limits()
assert limits["DailyApiRequests"]["Remaining"] < limits["DailyApiRequests"]["Max"], limits["DailyApiRequests"]
assert {"DataStorageMB", "DailyBulkApiBatches", "HourlyPublishedPlatformEvents", "DailyDeliveredPlatformEvents"} <= limits.keys()
assert all(set(v) == {"Max", "Remaining"} for v in limits.values()), limits

try:
    sf.query("SELECT Shoe_Size FROM User")
    sys.exit("a bad field was accepted")
except SalesforceMalformedRequest as e:
    assert e.content[0]["errorCode"] == "INVALID_FIELD", e.content
    # As Salesforce does: the query, a caret under the field, where it is, then why.
    message = e.content[0]["message"]
    assert message.startswith("\nSELECT Shoe_Size FROM User\n       ^\nERROR at Row:1:Column:8\nNo such column 'Shoe_Size'"), message
# An unknown resource answers Salesforce's error body, which the client shows.
try:
    sf.restful("no-such-resource")
    sys.exit("an unknown resource answered")
except SalesforceResourceNotFound as e:
    assert e.content[0]["errorCode"] == "NOT_FOUND", e.content

# query?columns=true answers the query's columns, not its rows (command-line clients
# ask for them to lay out a table).
columns = requests.get(os.environ["SFSIM_URL"] + "/services/data/v62.0/query",
                       params={"q": "SELECT Id, Username, Profile.Name, Profile.Id FROM User", "columns": "true"},
                       headers={"Authorization": "Bearer " + os.environ["SFSIM_TOKEN"]}, verify=os.environ["SFSIM_CA"]).json()
assert (columns["entityName"], columns["idSelected"], columns["keyPrefix"]) == ("User", True, "005"), columns
by_name = {c["columnName"]: c for c in columns["columnMetadata"]}
assert list(by_name) == ["Id", "Username", "Profile"], list(by_name)
assert by_name["Username"]["apexType"] == "String" and by_name["Username"]["textType"] is True, by_name["Username"]
assert [(j["columnName"], j["displayName"]) for j in by_name["Profile"]["joinColumns"]] == [("Name", "Profile.Name"), ("Id", "Profile.Id")], by_name["Profile"]

# A doubled slash after the host (as some clients build their URLs) is served.
doubled = requests.get(os.environ["SFSIM_URL"] + "//services/data/v62.0/limits",
                       headers={"Authorization": "Bearer " + os.environ["SFSIM_TOKEN"]}, verify=os.environ["SFSIM_CA"])
assert doubled.status_code == 200 and "DailyApiRequests" in doubled.json(), doubled.text

# A client with only a token and an instance URL finds out who it is: the resource
# list names the identity URL, which also takes the token as `oauth_token`.
resources = sf.restful("")
recent = requests.get(os.environ["SFSIM_URL"] + resources["recent"],
                      headers={"Authorization": "Bearer " + os.environ["SFSIM_TOKEN"]}, verify=os.environ["SFSIM_CA"])
assert (recent.status_code, recent.json()) == (200, []), recent.text  # sfsim has no pages to view records on
identity_url = resources["identity"]
me = requests.get(identity_url, params={"oauth_token": os.environ["SFSIM_TOKEN"]}, verify=os.environ["SFSIM_CA"])
assert me.status_code == 200, me.text
assert identity_url.endswith(me.json()["user_id"]), (identity_url, me.json())
# The Metadata API through the client's own WSDL: Event Manager's settings, and a name
# that does not exist, which is a record without a fullName (nil), not an error.
settings = sf.mdapi.RealTimeEventSettings.read(["RealTimeEvent"])
streaming = {e.entityName: e.isEnabled for e in settings.realTimeEvents}
assert streaming["ReportEventStream"] is True, streaming
missing = sf.mdapi.RealTimeEventSettings.read(["NoSuchSettings"])
assert missing is not None and missing["fullName"] is None, repr(missing)
# describeMetadata and listMetadata, as deployment tools call them first.
described = sf.mdapi.describe_metadata()
names = {o.xmlName: o for o in described.metadataObjects}
assert names["PermissionSet"].directoryName == "permissionsets" and names["Report"].inFolder is True, names.keys()
query = sf.mdapi._client.get_type("ns0:ListMetadataQuery")
listed = sf.mdapi.list_metadata([query(type="PermissionSet"), query(type="RealTimeEventSettings")])
by_type = {}
for item in listed:
    by_type.setdefault(item.type, []).append(item)
assert [i.fullName for i in by_type["RealTimeEventSettings"]] == ["RealTimeEvent"], by_type.keys()
assert all(i.fileName == "permissionsets/" + i.fullName + ".permissionset" for i in by_type["PermissionSet"])
assert len(by_type["PermissionSet"]) >= 3 and all(i.id.startswith("0PS") for i in by_type["PermissionSet"])
try:
    sf.mdapi.list_metadata([query(type="NoSuchType")])
    raise AssertionError("an unknown type was listed")
except Exception as e:  # zeep's Fault
    assert "INVALID_TYPE" in str(e), repr(e)
print("ok")
