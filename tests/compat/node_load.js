// The README's Node snippet, run by `make compat-node` (not by make test:
// installing better-sqlite3 compiles SQLite from source when no prebuilt
// binary can be downloaded, which takes minutes).  It loads the extension
// through better-sqlite3's own SQLite, previews a record (nothing is sent)
// and prints the version.  Exits non-zero on any failure.
//
//   node tests/compat/node_load.js EXTENSION
const Database = require('better-sqlite3');
const db = new Database(':memory:');
db.loadExtension(process.argv[2]);
const version = db.prepare('SELECT callrail_version() AS v').get().v;
db.prepare("SELECT callrail_credential('fake', 'test-token', 'http://127.0.0.1:9')").get();
db.prepare("SELECT callrail_destination('co', json_object('credential', 'fake'," +
           " 'url', '/v3/a/ACC1/companies.json'))").get();
const rows = db.prepare("SELECT json_extract(body, '$.name') AS name" +
                        " FROM callrail_preview('co', 'SELECT ''Node'' AS name')").all();
if (rows.length !== 1 || rows[0].name !== 'Node') throw new Error(JSON.stringify(rows));
console.log('node ' + process.version + ': ' + version + ': preview ok');
