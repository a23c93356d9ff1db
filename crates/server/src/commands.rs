//! The subcommands that work on the store directly (no server needed).

use std::io::IsTerminal;
use std::path::Path;

use cid::Cid;
use futures::{StreamExt, TryStreamExt};
use model::content::{AddRequest, ByteRange, ByteStream, ContentService, ImportOptions, parse_cid};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::error::Error;
use crate::wiring::Services;

/// Read size from files and stdin: four default chunks per read, cut into chunks without a copy.
const READ_SIZE: usize = 1024 * 1024;
/// Files at least this large get a progress bar when stderr is a terminal.
const PROGRESS_THRESHOLD: u64 = 16 * 1024 * 1024;

/// `CID[/path...]`, with or without a leading `/ipfs/`, split into the root and its path.
pub fn parse_content_path(input: &str) -> Result<(Cid, Vec<String>), Error> {
    let trimmed = input.strip_prefix("/ipfs/").unwrap_or(input).trim_start_matches('/');
    let mut parts = trimmed.split('/');
    let cid = parse_cid(parts.next().unwrap_or_default())?;
    Ok((cid, parts.filter(|p| !p.is_empty()).map(str::to_owned).collect()))
}

async fn resolve(services: &Services, path: &str) -> Result<Cid, Error> {
    let (root, segments) = parse_content_path(path)?;
    let trail = services.content.resolve(&root, &segments).await?;
    Ok(*trail.last().expect("a trail holds at least the root"))
}

fn reader_stream<R: tokio::io::AsyncRead + Send + 'static>(reader: R) -> ByteStream {
    ReaderStream::with_capacity(reader, READ_SIZE)
        .map_err(|e| model::Error::Input(e.to_string()))
        .boxed()
}

async fn open_input(path: &Path) -> Result<(ByteStream, Option<u64>), Error> {
    if path == Path::new("-") {
        return Ok((reader_stream(tokio::io::stdin()), None));
    }
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let size = file.metadata().await.ok().map(|m| m.len());
    Ok((reader_stream(file), size))
}

fn with_progress(input: ByteStream, size: Option<u64>, quiet: bool) -> ByteStream {
    match size {
        Some(size) if !quiet && size >= PROGRESS_THRESHOLD && std::io::stderr().is_terminal() => {
            let bar = indicatif::ProgressBar::new(size).with_style(
                indicatif::ProgressStyle::with_template("{bytes}/{total_bytes} [{bar:40}] {bytes_per_sec} {eta}")
                    .expect("a valid progress template"),
            );
            let done = bar.clone();
            input
                .inspect_ok(move |piece| bar.inc(piece.len() as u64))
                .chain(futures::stream::poll_fn(move |_| {
                    done.finish_and_clear();
                    std::task::Poll::Ready(None)
                }))
                .boxed()
        }
        _ => input,
    }
}

pub struct AddArgs<'a> {
    pub path: &'a Path,
    pub cid_version: u8,
    pub raw_leaves: Option<bool>,
    pub chunker: &'a str,
    pub quiet: bool,
    pub pin: bool,
}

pub async fn add(services: &Services, args: AddArgs<'_>) -> Result<(), Error> {
    let options = ImportOptions::new(Some(args.cid_version), args.raw_leaves, Some(args.chunker))?;
    let (input, size) = open_input(args.path).await?;
    let name = (args.path != Path::new("-"))
        .then(|| args.path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .flatten();
    let request = AddRequest {
        options,
        name: name.clone(),
        pin: args.pin,
        ..Default::default()
    };
    let added = services
        .content
        .add(with_progress(input, size, args.quiet), request)
        .await?;
    if args.quiet {
        println!("{}", added.cid);
    } else {
        println!("added {} {}", added.cid, name.unwrap_or_else(|| added.cid.to_string()));
    }
    Ok(())
}

/// Copies a stream to stdout; a closed pipe (`| head`) ends quietly.
async fn write_stdout(mut stream: ByteStream) -> Result<(), Error> {
    let mut stdout = tokio::io::stdout();
    while let Some(piece) = stream.next().await {
        let piece = piece?;
        match stdout.write_all(&piece).await {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other.map_err(|e| Error::io("writing to stdout", e))?,
        }
    }
    match stdout.flush().await {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| Error::io("writing to stdout", e)),
    }
}

pub async fn cat(services: &Services, path: &str, offset: u64, length: Option<u64>) -> Result<(), Error> {
    let cid = resolve(services, path).await?;
    write_stdout(services.content.read(&cid, ByteRange::new(offset, length)).await?).await
}

pub async fn ls(services: &Services, path: &str) -> Result<(), Error> {
    let cid = resolve(services, path).await?;
    for entry in services.content.list_directory(&cid).await? {
        println!("{} {} {}", entry.cid, entry.tsize, entry.name);
    }
    Ok(())
}

pub async fn pin_add(services: &Services, path: &str) -> Result<(), Error> {
    let cid = resolve(services, path).await?;
    services.content.pin(&cid).await?;
    println!("pinned {cid} recursively");
    Ok(())
}

pub async fn pin_rm(services: &Services, path: &str) -> Result<(), Error> {
    let cid = resolve(services, path).await?;
    services.content.unpin(&cid).await?;
    println!("unpinned {cid}");
    Ok(())
}

pub async fn pin_ls(services: &Services) -> Result<(), Error> {
    for cid in services.content.pins().await? {
        println!("{cid} recursive");
    }
    Ok(())
}

/// Returns whether the store is intact.
pub async fn repo_verify(services: &Services) -> Result<bool, Error> {
    let report = services.content.verify_store().await?;
    for cid in &report.corrupted {
        println!("corrupted {cid}");
    }
    eprintln!(
        "verified {} blocks, {} corrupted",
        report.checked,
        report.corrupted.len()
    );
    Ok(report.corrupted.is_empty())
}

pub async fn repo_gc(services: &Services) -> Result<(), Error> {
    let report = services.content.collect_garbage().await?;
    for cid in &report.removed {
        println!("removed {cid}");
    }
    eprintln!("kept {} blocks, removed {}", report.kept, report.removed.len());
    Ok(())
}

pub async fn car_export(services: &Services, path: &str) -> Result<(), Error> {
    let cid = resolve(services, path).await?;
    write_stdout(
        services
            .content
            .export_car(&cid, &[], model::content::CarScope::All)
            .await?,
    )
    .await
}

pub async fn car_import(services: &Services, path: &Path) -> Result<(), Error> {
    let (input, _) = open_input(path).await?;
    let imported = services.content.import_car(input, true).await?;
    for root in &imported.roots {
        println!("imported {root}");
    }
    eprintln!("{} blocks, {} bytes", imported.blocks, imported.bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_paths_split_into_root_and_segments() {
        let (cid, path) = parse_content_path("/ipfs/QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o/a/b.txt").unwrap();
        assert_eq!(cid.to_string(), "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o");
        assert_eq!(path, ["a", "b.txt"]);
        let (_, path) = parse_content_path("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o/").unwrap();
        assert!(path.is_empty());
        assert!(matches!(
            parse_content_path("nope/a"),
            Err(Error::Model(model::Error::InvalidCid { .. }))
        ));
    }
}
