from accounts.roles import ROLES


def test_roles_sync_gives_each_role_its_permissions(make_user):
    curator = make_user("curator")
    manager = make_user("manager", username="m")
    assert curator.has_perm("curation.add_upload")
    assert not manager.has_perm("curation.add_upload")
    assert manager.has_perm("curation.view_dataset")
    assert len(ROLES) == 7
