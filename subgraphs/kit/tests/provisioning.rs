//! Provisioning a service's role and database against the real server: what `make run`,
//! the tests and the process clusters do before a service starts.

use diesel::sql_query;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use subgraph_kit::config::{DEFAULT_POSTGRES_URL, database_url, env_or, with_user};
use subgraph_kit::db::{connect_admin, provision_database};

struct Scratch {
    admin: String,
    role: String,
    other_role: String,
    name: String,
}

impl Scratch {
    fn new() -> Self {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
        Self {
            admin: env_or("POSTGRES_URL", DEFAULT_POSTGRES_URL),
            role: format!("water_probe_{suffix}"),
            other_role: format!("water_other_{suffix}"),
            name: format!("probe_{suffix}"),
        }
    }

    async fn connect_as(&self, role: &str) -> Result<AsyncPgConnection, diesel::ConnectionError> {
        AsyncPgConnection::establish(&database_url(&with_user(&self.admin, role), &self.name)).await
    }

    async fn remove(self) {
        let mut admin = connect_admin(&self.admin).await.expect("admin");
        for statement in [
            format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
            format!("DROP ROLE IF EXISTS \"{}\"", self.role),
            format!("DROP ROLE IF EXISTS \"{}\"", self.other_role),
        ] {
            sql_query(&statement).execute(&mut admin).await.expect(&statement);
        }
    }
}

#[tokio::test]
async fn provisioners_racing_on_one_role_and_database_all_succeed_and_keep_others_out() {
    let scratch = Scratch::new();
    let runs = (0..6).map(|_| provision_database(&scratch.admin, &scratch.role, &scratch.name, None));
    for result in futures::future::join_all(runs).await {
        result.expect("every provisioner succeeds");
    }
    provision_database(&scratch.admin, &scratch.other_role, &format!("{}_other", scratch.name), None)
        .await
        .expect("another service's role");
    let mut own = scratch.connect_as(&scratch.role).await.expect("the role reaches its database");
    sql_query("CREATE TABLE things (id int)").execute(&mut own).await.expect("and creates tables in it");
    let Err(refused) = scratch.connect_as(&scratch.other_role).await else { panic!("another role connected") };
    assert!(refused.to_string().contains("permission denied for database"), "{refused}");
    drop(own);
    let mut admin = connect_admin(&scratch.admin).await.expect("admin");
    sql_query(format!("DROP DATABASE \"{}_other\"", scratch.name)).execute(&mut admin).await.expect("drop");
    scratch.remove().await;
}

#[tokio::test]
async fn a_database_made_before_roles_is_handed_to_its_service_with_everything_in_it() {
    let scratch = Scratch::new();
    let mut admin = connect_admin(&scratch.admin).await.expect("admin");
    sql_query(format!("CREATE DATABASE \"{}\"", scratch.name)).execute(&mut admin).await.expect("create");
    let mut old = AsyncPgConnection::establish(&database_url(&scratch.admin, &scratch.name)).await.expect("connect");
    old.batch_execute(
        "CREATE TYPE mood AS ENUM ('fine'); \
         CREATE TABLE things (id bigserial PRIMARY KEY, mood mood NOT NULL); \
         CREATE TABLE counters (id int GENERATED ALWAYS AS IDENTITY, n int); \
         CREATE SEQUENCE loose; \
         CREATE VIEW fine_things AS SELECT id FROM things; \
         CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;",
    )
    .await
    .expect("the old owner's schema");
    drop(old);
    provision_database(&scratch.admin, &scratch.role, &scratch.name, None).await.expect("handed over");
    let mut own = scratch.connect_as(&scratch.role).await.expect("the role reaches it");
    own.batch_execute(
        "INSERT INTO things (mood) VALUES ('fine'); INSERT INTO counters (n) VALUES (1); \
         SELECT nextval('loose'); ALTER TYPE mood ADD VALUE 'grand'; SELECT count(*) FROM fine_things; \
         CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;",
    )
    .await
    .expect("the role owns all of it");
    drop(own);
    scratch.remove().await;
}
