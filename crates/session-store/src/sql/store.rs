//! What both SQL stores are, written once: the store, its builder, and
//! every operation whose statements differ only in their text. Each
//! dialect module supplies `Statements`, `COLUMNS`, its migrations
//! (`migrate_tables`, `check_tables`) and the operations whose flow
//! differs (`update`, `touch`, `journal_append`, `journal_mark`,
//! `export_rows`, `is_duplicate`), then invokes [`sql_store!`].

use keel_pool_core::sqlx;

/// The store type `$Store` over pool manager `$Manager` and connection
/// `$Conn`, with the doc comment given first.
macro_rules! sql_store {
    ($(#[$doc:meta])* $Store:ident, $Manager:ident, $Conn:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $Store {
            inner: Arc<Inner>,
        }

        struct Inner {
            pool: Pool<$Manager>,
            sql: Statements,
            config: StoreConfig,
            clock: Arc<dyn Clock>,
            events: Events,
            runtime: tokio::runtime::Handle,
            sweeper: Sweeper,
        }

        impl fmt::Debug for $Store {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("$Store")
                    .field("sessions", &self.inner.sql.sessions.as_str())
                    .field("config", &self.inner.config)
                    .finish_non_exhaustive()
            }
        }

        impl $Store {
            /// A builder over `pool`, the tables `sql` names and the store `config`;
            /// `.clock()`, `.observer()` and `.name()` as for every store, then
            /// `.build().await`.
            pub fn builder(
                pool: Pool<$Manager>,
                sql: SqlConfig,
                config: StoreConfig,
            ) -> StoreBuilder<(Pool<$Manager>, SqlConfig)> {
                StoreBuilder::new((pool, sql), config)
            }

            /// Creates or upgrades the tables `sql` names to this code's version:
            /// idempotent, and safe when several instances run it at once (they
            /// take turns under a lock).
            ///
            /// # Errors
            /// [`StoreError::Config`] for a bad `sql`; [`SchemaError::TooNew`](super::SchemaError::TooNew)
            /// when a newer release migrated the tables; [`StoreError::Backend`]
            /// when the database fails.
            pub async fn migrate(pool: &Pool<$Manager>, sql: &SqlConfig) -> Result<(), StoreError> {
                sql.validate()?;
                let mut conn = pool.get().await.map_err(backend)?;
                migrate_tables(&mut conn, sql).await
            }

            /// The name the store reports under (`StoreBuilder::name`).
            pub fn name(&self) -> &str {
                self.inner.events.name()
            }
        }

        impl StoreBuilder<(Pool<$Manager>, SqlConfig)> {
            /// Checks the configs and the tables' version, then starts the expiry
            /// sweep (every `cleanup_interval`) on the current tokio runtime.
            ///
            /// # Errors
            /// [`StoreError::Config`] naming a bad field; [`StoreError::Schema`]
            /// when the tables are missing, behind or newer than this code;
            /// [`StoreError::Backend`] when the database cannot be reached;
            /// outside a tokio runtime, [`StoreError::Backend`] saying so.
            pub async fn build(self) -> Result<$Store, StoreError> {
                let events = self.events();
                let StoreBuilder {
                    backend: (pool, sql),
                    config,
                    clock,
                    ..
                } = self;
                config.validate()?;
                sql.validate()?;
                let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                    StoreError::Backend(
                        concat!(stringify!($Store), " needs a tokio runtime (its pool and sweep run on it)").into(),
                    )
                })?;
                check_tables(&mut *pool.get().await.map_err(backend)?, &sql).await?;
                let inner = Arc::new(Inner {
                    pool,
                    sql: Statements::new(&sql),
                    config,
                    clock,
                    events,
                    runtime,
                    sweeper: Sweeper::default(),
                });
                inner.sweeper.start(
                    Arc::downgrade(&inner),
                    inner.config.cleanup_interval,
                    |inner| {
                        // The sweeper calls this on a blocking thread.
                        let _ = inner.runtime.block_on(cleanup(inner));
                    },
                )?;
                Ok($Store { inner })
            }
        }

        /// Deletes expired sessions in batches; reports how many.
        async fn cleanup(inner: &Inner) -> Result<usize, StoreError> {
            let now = ms(inner.clock.now_millis());
            let removed: u64 = on_connection!(inner, Mode::Write, |conn| {
                let mut removed = 0u64;
                loop {
                    let done = sqlx::query(inner.sql.cleanup.clone())
                        .bind(now)
                        .bind(CLEANUP_BATCH)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                    removed += done;
                    if done < CLEANUP_BATCH.unsigned_abs() {
                        break;
                    }
                }
                Ok(removed)
            })?;
            let count = usize::try_from(removed).unwrap_or(usize::MAX);
            if count > 0 {
                inner.events.emit(|name| Event::Expired { name, count });
            }
            Ok(count)
        }

        impl Inner {
            fn now(&self) -> u64 {
                self.clock.now_millis()
            }

            /// Refuses a create when `max_sessions` sessions are alive.
            async fn make_room(&self, conn: &mut $Conn, now: i64) -> Result<(), Failure> {
                let Some(limit) = self.config.max_sessions else {
                    return Ok(());
                };
                let live: i64 = sqlx::query_scalar(self.sql.count_live.clone())
                    .bind(now)
                    .fetch_one(conn)
                    .await?;
                if usize::try_from(live).unwrap_or(usize::MAX) >= limit {
                    return Err(StoreError::TooManySessions { limit }.into());
                }
                Ok(())
            }

            async fn insert(
                &self,
                conn: &mut $Conn,
                session: &Session,
                journal_seq: u64,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(self.sql.insert.clone())
                    .bind(session.id.as_bytes().as_slice())
                    .bind(&*session.client_id)
                    .bind(&*session.transport)
                    .bind(ms(session.created_at))
                    .bind(ms(session.updated_at))
                    .bind(ms(session.last_activity))
                    .bind(ttl_ms(session.ttl))
                    .bind(ms(session.expires_at()))
                    .bind(ms(session.version))
                    .bind(ms(journal_seq))
                    .bind(session.data.as_json())
                    .execute(conn)
                    .await
                    .map(drop)
            }

            /// Why an update changed nothing: a newer version, or no live
            /// session.
            async fn refused(&self, conn: &mut $Conn, key: &[u8], now: i64, expected: u64) -> Failure {
                let current: Result<Option<i64>, sqlx::Error> =
                    sqlx::query_scalar(self.sql.version.clone())
                        .bind(key)
                        .bind(now)
                        .fetch_optional(&mut *conn)
                        .await;
                match current {
                    Ok(Some(actual)) => StoreError::Conflict {
                        expected,
                        actual: actual.unsigned_abs(),
                    }
                    .into(),
                    Ok(None) => match self.expire_one(conn, key, now).await {
                        Ok(()) => StoreError::NotFound.into(),
                        Err(e) => e.into(),
                    },
                    Err(e) => e.into(),
                }
            }

            /// A write found session `key` absent: if it is there but
            /// expired, it goes now (as the in-process stores do), heard as
            /// `Expired`.
            async fn expire_one(&self, conn: &mut $Conn, key: &[u8], now: i64) -> Result<(), sqlx::Error> {
                let gone = sqlx::query(self.sql.expire_one.clone())
                    .bind(key)
                    .bind(now)
                    .execute(conn)
                    .await?
                    .rows_affected();
                if gone > 0 {
                    self.events.emit(|name| Event::Expired { name, count: 1 });
                }
                Ok(())
            }

            /// Appends pending record `seq` inside the caller's transaction,
            /// removing the oldest finished one when the journal is full.
            async fn append_record(
                &self,
                tx: &mut $Conn,
                key: &[u8],
                seq: i64,
                now: i64,
                entry: &JournalEntry,
            ) -> Result<(), Failure> {
                let (sql, limit) = (&self.sql, self.config.max_journal_records);
                let held: i64 = sqlx::query_scalar(sql.journal_count.clone())
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
                if usize::try_from(held).unwrap_or(usize::MAX) >= limit {
                    let finished: Option<i64> =
                        sqlx::query_scalar(sql.journal_oldest_finished.clone())
                            .bind(key)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let finished = finished.ok_or(StoreError::JournalFull { limit })?;
                    sqlx::query(sql.journal_remove.clone())
                        .bind(key)
                        .bind(finished)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(sql.journal_insert.clone())
                    .bind(key)
                    .bind(seq)
                    .bind(now)
                    .bind(&entry.kind)
                    .bind(&entry.target)
                    .bind(&entry.content_hash)
                    .bind(status_code(JournalStatus::Pending))
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            }

            /// Every live session's row, and the journal rows of theirs, in
            /// the caller's transaction.
            async fn export_in(
                &self,
                tx: &mut $Conn,
                now: i64,
            ) -> Result<(Vec<Row<$Conn>>, Vec<Row<$Conn>>), Failure> {
                let sessions = sqlx::query(self.sql.export_sessions.clone())
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
                let journals = sqlx::query(self.sql.export_journals.clone())
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
                Ok((sessions, journals))
            }

            async fn insert_records(
                &self,
                conn: &mut $Conn,
                id: SessionId,
                records: &[JournalRecord],
            ) -> Result<(), sqlx::Error> {
                for record in records {
                    sqlx::query(self.sql.journal_insert.clone())
                        .bind(id.as_bytes().as_slice())
                        .bind(ms(record.seq))
                        .bind(ms(record.at))
                        .bind(&record.entry.kind)
                        .bind(&record.entry.target)
                        .bind(&record.entry.content_hash)
                        .bind(status_code(record.status))
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            }
        }

        impl SessionStore for $Store {
            async fn create(&self, new: NewSession) -> Result<Arc<Session>, StoreError> {
                let inner = &*self.inner;
                inner.config.check_size(&new.data)?;
                let now = inner.now();
                let mut session = Session::create(new, SessionId::random()?, now, inner.config.default_ttl);
                on_connection!(inner, Mode::Write, |conn| {
                    inner.make_room(conn, ms(now)).await?;
                    loop {
                        match inner.insert(conn, &session, 0).await {
                            Ok(()) => return Ok(()),
                            Err(e) if is_duplicate(&e) => session.id = SessionId::random()?,
                            Err(e) => return Err(e.into()),
                        }
                    }
                })?;
                inner.events.emit(|name| Event::Created { name });
                Ok(Arc::new(session))
            }

            async fn get(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
                let inner = &*self.inner;
                let now = ms(inner.now());
                let row = on_connection!(inner, Mode::Read, |conn| {
                    Ok(sqlx::query(inner.sql.get.clone())
                        .bind(id.as_bytes().as_slice())
                        .bind(now)
                        .fetch_optional(conn)
                        .await?)
                })?;
                row.map(|row| decode(&row).map(Arc::new)).transpose()
            }

            async fn update_with_ttl(
                &self,
                id: &SessionId,
                expected_version: u64,
                data: Data,
                ttl: Option<Duration>,
            ) -> Result<Arc<Session>, StoreError> {
                let inner = &*self.inner;
                inner.config.check_size(&data)?;
                update(inner, id, expected_version, data, ttl)
                    .await
                    .inspect_err(|e| {
                        if matches!(e, StoreError::Conflict { .. }) {
                            inner.events.emit(|name| Event::Conflict { name });
                        }
                    })
            }

            async fn touch(&self, id: &SessionId) -> Result<Arc<Session>, StoreError> {
                touch(&self.inner, id).await
            }

            async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
                let inner = &*self.inner;
                let removed = on_connection!(inner, Mode::Write, |conn| {
                    Ok(sqlx::query(inner.sql.delete.clone())
                        .bind(id.as_bytes().as_slice())
                        .execute(conn)
                        .await?
                        .rows_affected()
                        > 0)
                })?;
                if removed {
                    inner.events.emit(|name| Event::Deleted { name });
                }
                Ok(removed)
            }

            /// Every row, expired ones not yet cleaned up included (as every
            /// store counts).
            async fn len(&self) -> Result<usize, StoreError> {
                let inner = &*self.inner;
                let count: i64 = on_connection!(inner, Mode::Read, |conn| {
                    Ok(sqlx::query_scalar(inner.sql.count.clone())
                        .fetch_one(conn)
                        .await?)
                })?;
                Ok(usize::try_from(count).unwrap_or(0))
            }

            async fn by_client(&self, client_id: &str) -> Result<Vec<Arc<Session>>, StoreError> {
                let inner = &*self.inner;
                let now = ms(inner.now());
                let rows = on_connection!(inner, Mode::Read, |conn| {
                    Ok(sqlx::query(inner.sql.by_client.clone())
                        .bind(client_id)
                        .bind(now)
                        .fetch_all(conn)
                        .await?)
                })?;
                rows.iter().map(|row| decode(row).map(Arc::new)).collect()
            }
        }

        impl ExpiredCleanup for $Store {
            async fn cleanup_expired(&self) -> Result<usize, StoreError> {
                cleanup(&self.inner).await
            }
        }

        impl SessionJournal for $Store {
            async fn journal_append(&self, id: &SessionId, entry: JournalEntry) -> Result<u64, StoreError> {
                journal_append(&self.inner, id, entry).await
            }

            async fn journal_mark(
                &self,
                id: &SessionId,
                seq: u64,
                status: JournalStatus,
            ) -> Result<(), StoreError> {
                crate::journal::finishing(seq, status)?;
                journal_mark(&self.inner, id, seq, status).await
            }

            async fn journal(&self, id: &SessionId) -> Result<Vec<JournalRecord>, StoreError> {
                let inner = &*self.inner;
                let now = ms(inner.now());
                let rows = on_connection!(inner, Mode::Read, |conn| {
                    Ok(sqlx::query(inner.sql.journal_read.clone())
                        .bind(id.as_bytes().as_slice())
                        .bind(now)
                        .fetch_all(conn)
                        .await?)
                })?;
                if rows.is_empty() {
                    return Err(StoreError::NotFound);
                }
                let mut records = Vec::with_capacity(rows.len());
                for row in &rows {
                    // The session's row with no record joined: an empty journal.
                    if row.try_get::<Option<i64>, _>(0).map_err(backend)?.is_some() {
                        records.push(decode_record(row, *id, 0)?);
                    }
                }
                Ok(records)
            }
        }

        impl SessionExport for $Store {
            /// Every live session and its journal, read in one repeatable-read
            /// transaction (one consistent moment).
            async fn export(&self) -> Result<Vec<SessionDump>, StoreError> {
                let inner = &*self.inner;
                let now = ms(inner.now());
                let (sessions, journal_rows) = export_rows(inner, now).await?;
                let mut journals: HashMap<SessionId, Vec<JournalRecord>> = HashMap::new();
                for row in &journal_rows {
                    let id = read_id(row, 0)?;
                    journals
                        .entry(id)
                        .or_default()
                        .push(decode_record(row, id, 1)?);
                }
                sessions
                    .iter()
                    .map(|row| {
                        let session = decode(row)?;
                        let last_seq = read_ms(row, session.id, 9)?;
                        let records = journals.remove(&session.id).unwrap_or_default();
                        Ok(SessionDump {
                            journal: Journal::from_parts(last_seq, records),
                            session: Arc::new(session),
                        })
                    })
                    .collect()
            }

            /// Replaces every session with `dumps`, in one transaction: a failure
            /// leaves the store as it was.
            async fn import(&self, dumps: Vec<SessionDump>) -> Result<usize, StoreError> {
                let inner = &*self.inner;
                let dumps = backup::admit(dumps, &inner.config, inner.now())?;
                let sql = &inner.sql;
                on_connection!(inner, Mode::Write, |conn| {
                    let mut tx = conn.begin().await?;
                    let work = async {
                        for clear in [&sql.clear_journals, &sql.clear_sessions] {
                            sqlx::query(clear.clone()).execute(&mut *tx).await?;
                        }
                        for dump in &dumps {
                            inner
                                .insert(&mut tx, &dump.session, dump.journal.last_seq())
                                .await?;
                            inner
                                .insert_records(&mut tx, dump.session.id, &dump.journal.records())
                                .await?;
                        }
                        Ok(dumps.len())
                    };
                    let result = work.await;
                    settle(tx, result).await
                })
            }
        }
    };
}

pub(super) use sql_store;

/// The row type of connection type `C`.
pub(super) type Row<C> = <<C as sqlx::Connection>::Database as sqlx::Database>::Row;
